//! Compiles the C++ bindings tch lacks against the libtorch that torch-sys found, with
//! the flags torch-sys builds libtch with: ATen's fused AdamW (csrc/fused_adamw.cpp) and
//! torch.distributed's c10d (csrc/c10d.cpp: TCPStore + ProcessGroupGloo, and
//! ProcessGroupNCCL when CUDA headers are present).
//!
//! The torch wheel ships c10d's headers but not Gloo's, which ProcessGroupGloo.hpp
//! includes: Debian's `libgloo-dev` provides them (scripts/setup.sh installs it). Only
//! declarations come from them; the Gloo that runs is the one inside libtorch_cpu.
//! NCCL is compiled in only when asked for with `TILLER_NCCL=1` (`scripts/setup.sh --cuda`
//! writes it into .cargo/config.toml), from the headers of the nvidia-* wheels that setup
//! installs (or `TILLER_CUDA_INCLUDE`): the CPU build never needs them, even on a machine
//! whose full PyTorch install left an incomplete set of CUDA headers behind.

use std::path::{Path, PathBuf};

fn main() {
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys reports where libtorch is (DEP_TCH_LIBTORCH_LIB)"),
    );
    let include = lib
        .parent()
        .map(|root| root.join("include"))
        .expect("libtorch's lib directory has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-changed=csrc/fused_adamw.cpp");
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=TILLER_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=TILLER_NCCL");
    println!("cargo:rerun-if-env-changed=TILLER_GLOO_INCLUDE");
    let base = || {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .pic(true)
            .warnings(false)
            .include(&include)
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"));
        build
    };
    base()
        .file("csrc/fused_adamw.cpp")
        .compile("tiller_fused_adamw");

    let gloo = std::env::var("TILLER_GLOO_INCLUDE").unwrap_or_else(|_| "/usr/include".into());
    if !Path::new(&gloo).join("gloo/context.h").exists() {
        panic!(
            "{gloo}/gloo/context.h not found: c10d's ProcessGroupGloo.hpp needs Gloo's headers \
             (apt-get install libgloo-dev, which scripts/setup.sh does, or set TILLER_GLOO_INCLUDE)"
        );
    }
    let mut c10d = base();
    // c10d's headers reach into the C++ frontend's (torch/csrc/api/include).
    c10d.include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .define("USE_C10D_GLOO", None);
    if std::env::var("TILLER_NCCL").is_ok_and(|v| v == "1") {
        let cuda = cuda_includes(&lib);
        if cuda.is_empty() {
            panic!(
                "TILLER_NCCL=1 but libtorch_cuda.so, nccl.h or cuda_runtime.h was not found next \
                 to {} (scripts/setup.sh --cuda installs them, or set TILLER_CUDA_INCLUDE)",
                lib.display()
            );
        }
        c10d.define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("TILLER_NCCL", None)
            .includes(&cuda);
        println!("cargo:rustc-link-lib=torch_cuda");
        println!(
            "cargo:warning=c10d: NCCL enabled (headers from {})",
            cuda[0].display()
        );
    }
    c10d.file("csrc/c10d.cpp").compile("tiller_c10d");
}

/// Include directories holding `nccl.h` and `cuda_runtime.h` when this libtorch has
/// CUDA (libtorch_cuda.so) and both are present; empty otherwise.
fn cuda_includes(lib: &Path) -> Vec<PathBuf> {
    if !lib.join("libtorch_cuda.so").exists() {
        return Vec::new();
    }
    let mut dirs: Vec<PathBuf> = std::env::var("TILLER_CUDA_INCLUDE")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    // The wheel layout: site-packages/torch/lib and site-packages/nvidia/<pkg>/include
    // (nvidia/cu13/include for CUDA 13 wheels).
    if let Some(nvidia) = lib
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("nvidia"))
    {
        if let Ok(entries) = std::fs::read_dir(&nvidia) {
            // CCCL's headers (`nv/target`) sit in include/cccl in the CUDA 13 wheels.
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path().join("include"))
                .flat_map(|p| [p.join("cccl"), p])
                .filter(|p| p.is_dir())
                .collect();
            found.sort();
            dirs.extend(found);
        }
    }
    let has = |header: &str| dirs.iter().any(|d| d.join(header).exists());
    // cuda_runtime.h reaches into crt/ and CCCL's nv/; a wheel set missing either cannot
    // compile ProcessGroupNCCL, so it is left out (Gloo only) rather than failing the build.
    let complete = ["nccl.h", "cuda_runtime.h", "crt/host_config.h", "nv/target"];
    if complete.iter().all(|h| has(h)) {
        dirs
    } else {
        Vec::new()
    }
}
