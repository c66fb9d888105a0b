//! `worker-orcd`: the inference worker and its command-line tools.

fn main() -> anyhow::Result<()> {
    Ok(())
}
