//! Compiles the one C++ binding tch lacks (ATen's fused AdamW, csrc/fused_adamw.cpp)
//! against the libtorch that torch-sys found, with the flags torch-sys builds libtch with.

use std::path::PathBuf;

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
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .file("csrc/fused_adamw.cpp")
        .compile("tiller_fused_adamw");
}
