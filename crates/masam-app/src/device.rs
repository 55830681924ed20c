//! Choosing the device a run uses, from a string in a config file or on the command line.

use masam_adapter::candle::Device;

use crate::{AppError, Result};

/// The default device string, `"cpu"`.
pub fn default_device() -> String {
    "cpu".to_string()
}

/// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs a build with the `cuda` feature and a
/// GPU; otherwise the error says so.
///
/// ```
/// use masam_app::device::parse_device;
/// assert!(parse_device("cpu").unwrap().is_cpu());
/// assert!(parse_device("tpu").is_err());
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    let ordinal = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(AppError::Config(format!(
                    "unknown device {spec:?}: use cpu, cuda or cuda:N"
                )))
            }
        },
    };
    Device::new_cuda(ordinal).map_err(|e| {
        AppError::Config(format!(
            "device {spec:?} is not available ({e}); CUDA needs a build with `--features cuda` \
             and a GPU, otherwise use --device cpu"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        for bad in ["", "cuda:x", "metal", "cuda:-1"] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("unknown device"), "{bad}: {e}");
        }
        // without the cuda feature (CI), asking for CUDA is a clear error, not a panic
        #[cfg(not(feature = "cuda"))]
        {
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
