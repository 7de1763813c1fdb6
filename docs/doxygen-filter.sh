#!/bin/sh
# Doxygen's INPUT_FILTER (docs/Doxyfile): prints the file it is given with a
# doc line before each `typedef int32_t rkl_...;`. cbindgen writes each enum
# as `enum name { ... };` plus, for C before C23, that typedef; the enum's
# comment documents the enum, this gives the typedef one of its own. Only
# what Doxygen reads changes, never the header.
exec sed -e 's|^typedef int32_t \(rkl_[a-z_]*\);|/** A value of enum ::\1 as a fixed-width integer (C before C23). */ typedef int32_t \1;|' "$1"
