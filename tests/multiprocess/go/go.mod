module github.com/herald-rt/herald/tests/multiprocess/go

go 1.23

require github.com/herald-rt/herald/bindings/go v0.0.0

replace github.com/herald-rt/herald/bindings/go => ../../../bindings/go
