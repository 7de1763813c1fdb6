module example.com/rkl-chat

go 1.19

require github.com/rkl-project/rkl/bindings/go v0.0.0

// This repository's binding; outside it, drop the replace and use a
// tagged version.
replace github.com/rkl-project/rkl/bindings/go => ../../../bindings/go
