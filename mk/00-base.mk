CHECK_EXTRA +=

# Where mk/bindings.mk installs the Node package from its npm tarball; also
# a prerequisite of mk/bench.mk (read before bindings.mk), so defined here.
NODE_APP := $(CURDIR)/build/bindings/node-app
