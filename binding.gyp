{
  "targets": [
    {
      "target_name": "sysgenid",
      "sources": ["native/sysgenid.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
