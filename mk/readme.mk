# The README's C example must compile cleanly against the staged install.

.PHONY: check-readme-example
CHECK_EXTRA += check-readme-example

check-readme-example: stage
	@mkdir -p build/readme
	@awk '/^```c$$/{on=1;next} /^```$$/{if(on)exit} on' README.md > build/readme/hello.c
	@test -s build/readme/hello.c || { echo "README.md has no C example"; exit 1; }
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic build/readme/hello.c \
	  $$(PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig pkg-config --cflags --libs rkl) -o build/readme/hello
	@echo "README C example compiles as C99"
