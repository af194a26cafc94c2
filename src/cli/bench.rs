//! `tiller bench`: forward and generation throughput (filled in below).

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<()> {
    anyhow::bail!("tiller bench is not implemented yet")
}
