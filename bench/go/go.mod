module rklbench

go 1.19

require rkl v0.0.0

replace rkl => ../../examples/go
