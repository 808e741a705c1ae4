{
  "targets": [
    {
      "target_name": "medic_cpu",
      "sources": [
        "native/core/tensor.cpp",
        "native/core/threads.cpp",
        "native/core/engine.cpp",
        "native/core/ops_table.cpp",
        "native/core/op_checks.cpp",
        "native/core/program.cpp",
        "native/core/cluster.cpp",
        "native/core/mpi.cpp",
        "native/core/nccl.cpp",
        "native/cpu/gemm.cpp",
        "native/cpu/gemm_bf16.cpp",
        "native/cpu/bf16_widen.cpp",
        "native/cpu/elementwise.cpp",
        "native/cpu/layernorm.cpp",
        "native/cpu/attention.cpp",
        "native/cpu/tokens.cpp",
        "native/cpu/loss.cpp",
        "native/cpu/optim.cpp",
        "native/cpu/init.cpp",
        "native/cpu/comm.cpp",
        "native/napi/addon.cpp",
        "native/napi/engine_wrap.cpp",
        "native/napi/tensor_wrap.cpp",
        "native/napi/program_wrap.cpp",
        "native/napi/comm_wrap.cpp",
        "native/napi/cluster_wrap.cpp",
        "native/core/no_cuda.cpp"
      ],
      "include_dirs": ["native/include", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "libraries": ["-ldl"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fvisibility=hidden"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "CLANG_CXX_LANGUAGE_STANDARD": "c++17" }
    }
  ]
}
