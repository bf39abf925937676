module github.com/herald-rt/herald/examples/go

go 1.23

require (
	github.com/coder/websocket v1.8.15
	github.com/herald-rt/herald/bindings/go v0.0.0
)

replace github.com/herald-rt/herald/bindings/go => ../../bindings/go
