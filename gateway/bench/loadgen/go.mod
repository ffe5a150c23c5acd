module nanogridata/bench/loadgen

go 1.23.0

require golang.org/x/crypto v0.40.0
