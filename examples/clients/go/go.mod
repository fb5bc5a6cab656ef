module wasmtx.example/invoke

go 1.19
