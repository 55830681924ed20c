//! Limits on what a reader may allocate for one file, checked against the header's claims before
//! any voxel buffer exists.
//!
//! Every volume reader (NIfTI-1/2 and DICOM, classic series and enhanced multi-frame) checks a
//! file in three steps before it allocates for voxels:
//!
//! 1. the declared voxel count against [`ReadLimits::max_voxels`];
//! 2. the stored bytes and the decoded bytes of the target type against
//!    [`ReadLimits::max_bytes`];
//! 3. the stored bytes against what the file can actually hold: its length for uncompressed
//!    data, and for compressed data (`.nii.gz`, encapsulated DICOM) its compressed length times
//!    [`ReadLimits::max_expansion`] plus [`ReadLimits::expansion_slack`]. Deflate cannot expand
//!    more than 1032:1, so a 261 KB `.nii.gz` cannot hold more than about 270 MB, whatever its
//!    header says. Even below these bounds, compressed data is read as it arrives instead of
//!    into a buffer sized from the header.
//!
//! ```
//! use masam_volume::io::ReadLimits;
//! let limits = ReadLimits { max_voxels: 1 << 20, ..ReadLimits::default() };
//! assert!(limits.check("a.nii".as_ref(), &[64, 64, 64], 2, 4).is_ok());
//! assert!(limits.check("a.nii".as_ref(), &[512, 512, 300], 2, 4).is_err());
//! ```

use std::path::Path;

use crate::error::{Result, VolumeError};

/// Allocation limits for reading one volume (see the module docs). The defaults accept any
/// real CT or MR volume (a 1024 × 1024 × 1000 CT is 2^30 voxels) and refuse more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest number of voxels of one volume (default 2^30).
    pub max_voxels: u64,
    /// Largest number of bytes of one volume, stored or decoded (default 4 GiB).
    pub max_bytes: u64,
    /// Largest ratio of decoded to compressed bytes believed for compressed data (default 1032,
    /// deflate's limit).
    pub max_expansion: u64,
    /// Bytes of decoded data always allowed on top of the expansion bound (default 64 MiB), so
    /// that a small blank image compressed to almost nothing still reads.
    pub expansion_slack: u64,
}

/// Default [`ReadLimits::max_voxels`].
pub const DEFAULT_MAX_VOXELS: u64 = 1 << 30;
/// Default [`ReadLimits::max_bytes`].
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_voxels: DEFAULT_MAX_VOXELS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_expansion: 1032,
            expansion_slack: 64 << 20,
        }
    }
}

impl ReadLimits {
    /// Checks a volume of `dims` (any order) stored with `stored_bytes` per voxel and decoded
    /// into `decoded_bytes` per voxel against [`max_voxels`](Self::max_voxels) and
    /// [`max_bytes`](Self::max_bytes). Returns the voxel count.
    ///
    /// # Errors
    /// [`VolumeError::TooLarge`] (bytes, checked first) or [`VolumeError::TooManyVoxels`],
    /// naming `path`.
    pub fn check(
        &self,
        path: &Path,
        dims: &[u64],
        stored_bytes: u64,
        decoded_bytes: u64,
    ) -> Result<u64> {
        let voxels = dims.iter().fold(1u64, |a, &d| a.saturating_mul(d));
        let stored = voxels.saturating_mul(stored_bytes);
        let decoded = voxels.saturating_mul(decoded_bytes);
        if stored > self.max_bytes || decoded > self.max_bytes {
            return Err(VolumeError::TooLarge {
                path: path.to_path_buf(),
                dims: dims.to_vec(),
                bytes_per_voxel: stored_bytes.max(decoded_bytes),
                bytes: stored.max(decoded),
                limit: self.max_bytes,
            });
        }
        if voxels > self.max_voxels {
            return Err(VolumeError::TooManyVoxels {
                path: path.to_path_buf(),
                dims: dims.to_vec(),
                voxels,
                limit: self.max_voxels,
            });
        }
        Ok(voxels)
    }

    /// The most decoded bytes that `compressed_len` bytes of compressed data are believed to
    /// hold: `compressed_len × max_expansion + expansion_slack` (saturating).
    pub fn max_decoded_from(&self, compressed_len: u64) -> u64 {
        compressed_len
            .saturating_mul(self.max_expansion)
            .saturating_add(self.expansion_slack)
    }

    /// Checks that `claimed` bytes fit in what the data can hold (`available`), else
    /// [`VolumeError::ClaimExceedsData`].
    pub(crate) fn check_claim(path: &Path, what: &str, claimed: u64, available: u64) -> Result<()> {
        if claimed > available {
            return Err(VolumeError::ClaimExceedsData {
                path: path.to_path_buf(),
                what: what.to_string(),
                claimed,
                available,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voxel_and_byte_limits() {
        let l = ReadLimits {
            max_voxels: 1000,
            max_bytes: 2000,
            ..ReadLimits::default()
        };
        let p = Path::new("x.nii");
        assert_eq!(l.check(p, &[10, 10, 10], 1, 2).unwrap(), 1000);
        assert!(matches!(
            l.check(p, &[10, 10, 11], 1, 1),
            Err(VolumeError::TooManyVoxels { voxels: 1100, .. })
        ));
        assert!(matches!(
            l.check(p, &[10, 10, 10], 1, 4),
            Err(VolumeError::TooLarge { bytes: 4000, .. })
        ));
        // Overflowing products saturate instead of wrapping to a small number.
        assert!(l.check(p, &[u64::MAX, u64::MAX, 2], 8, 8).is_err());
        assert_eq!(
            l.max_decoded_from(1000),
            1000 * 1032 + ReadLimits::default().expansion_slack
        );
        assert_eq!(l.max_decoded_from(u64::MAX), u64::MAX);
    }
}
