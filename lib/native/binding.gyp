{
  "targets": [
    {
      "target_name": "modarch_blas",
      "sources": ["blas.c"],
      "cflags": ["-O3", "-fno-math-errno"],
      "libraries": ["-lopenblas"]
    }
  ]
}
