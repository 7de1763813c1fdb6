module rklbench

go 1.19

require github.com/rkl-project/rkl/bindings/go v0.0.0

replace github.com/rkl-project/rkl/bindings/go => ../../bindings/go
