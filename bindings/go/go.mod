module rkl

go 1.19
