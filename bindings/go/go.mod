module github.com/rkl-project/rkl/bindings/go

go 1.19
