//! The crate's error type: every failure names the file (or folder) it came from and carries the
//! numbers that explain it.

use std::path::PathBuf;

/// A boxed error from another crate (DICOM, PNG, NIfTI or JSON decoder), kept as the
/// [`source`](std::error::Error::source) of a [`VolumeError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout `masam-volume`.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, writing or preparing volumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// An operating-system IO error (open, read, write, rename), including truncated gzip streams.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file atomically failed, or an input is not a regular file (see
    /// [`masam_fs::FsError`], which names the file and keeps the OS error as its source).
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// The file is not a NIfTI-1/2 file or its header is inconsistent (magic, sizeof_hdr, dims).
    #[error("{path}: invalid NIfTI header: {reason}")]
    InvalidHeader {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
        /// The underlying error (a decoder's or parser's), if there is one; its message is part
        /// of `reason` too.
        #[source]
        source: Option<BoxError>,
    },
    /// The voxel data would exceed the configured allocation limit (checked before reading).
    #[error("{path}: header declares dims {dims:?} × {bytes_per_voxel} B = {bytes} B, over the limit of {limit} B")]
    TooLarge {
        /// The file involved.
        path: PathBuf,
        /// Dimensions as declared in the header.
        dims: Vec<u64>,
        /// Bytes per voxel of the declared datatype.
        bytes_per_voxel: u64,
        /// Total bytes the data would need (saturating).
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The volume would have more voxels than the configured limit (checked before reading; see
    /// [`crate::io::ReadLimits`]).
    #[error("{path}: dims {dims:?} = {voxels} voxels, over the limit of {limit}")]
    TooManyVoxels {
        /// The file involved.
        path: PathBuf,
        /// Dimensions as declared.
        dims: Vec<u64>,
        /// Their product (saturating).
        voxels: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The header claims more data than the file holds or can hold (a truncated file, or a small
    /// file whose header claims a huge image); checked before allocating for it.
    #[error(
        "{path}: {what}: the header claims {claimed} B but the file holds at most {available} B"
    )]
    ClaimExceedsData {
        /// The file involved.
        path: PathBuf,
        /// Which data (e.g. "voxel data", "Pixel Data element").
        what: String,
        /// Bytes the header claims.
        claimed: u64,
        /// Bytes the file holds, or can hold once decompressed.
        available: u64,
    },
    /// A header number is not usable: not finite (NaN, ±inf, `1e999`), or out of its range
    /// (a spacing ≤ 0, a singular affine).
    #[error("{path}: {field} = {value}: {expected}")]
    InvalidValue {
        /// The file involved.
        path: PathBuf,
        /// Which field (e.g. `scl_slope`, `pixdim[3]`, `Rescale Slope`).
        field: String,
        /// Its value as read (`f64`; `inf` for `1e999`).
        value: f64,
        /// What it must be.
        expected: &'static str,
    },
    /// The NIfTI datatype code is not supported (complex, RGB, …).
    #[error("{path}: unsupported NIfTI datatype code {code}")]
    UnsupportedDatatype {
        /// The file involved.
        path: PathBuf,
        /// The raw `datatype` code.
        code: i16,
    },
    /// A 4D (or higher) file was read without choosing a volume.
    #[error(
        "{path}: {ndim}D data with dims {dims:?}; choose a volume with `NiftiReader::volume_index`"
    )]
    NotThreeD {
        /// The file involved.
        path: PathBuf,
        /// Number of dimensions in the header.
        ndim: usize,
        /// All dimensions.
        dims: Vec<u64>,
    },
    /// The requested 4D volume index is out of range.
    #[error("{path}: volume index {index} out of range (the file holds {count} volumes)")]
    VolumeIndex {
        /// The file involved.
        path: PathBuf,
        /// The requested index.
        index: usize,
        /// The number of volumes in the file.
        count: usize,
    },
    /// Voxels are NaN or infinite, as stored or once scaled and converted to the target type
    /// (a float64 `1e300` is infinite as `f32`).
    #[error("{path}: {count} non-finite voxel(s), first at flat index {first} (value {value:e} before conversion to the target type)")]
    NonFinite {
        /// The file involved.
        path: PathBuf,
        /// Number of non-finite voxels.
        count: usize,
        /// Flat (x-fastest) index of the first one.
        first: usize,
        /// The first one's value in `f64`, after scaling and before conversion to the target
        /// type (NaN, ±inf, or a finite value beyond the target type's range).
        value: f64,
    },
    /// Image and label grids differ.
    #[error("shape mismatch: image {image} is {image_shape:?} (Z,Y,X) but label {label} is {label_shape:?}")]
    ShapeMismatch {
        /// The image file.
        image: PathBuf,
        /// The label file.
        label: PathBuf,
        /// Image shape (Z, Y, X).
        image_shape: [usize; 3],
        /// Label shape (Z, Y, X).
        label_shape: [usize; 3],
    },
    /// Image and label affines differ by more than the tolerance.
    #[error("affine mismatch: image {image} and label {label} differ by {max_abs_diff} (tolerance {tolerance})")]
    AffineMismatch {
        /// The image file.
        image: PathBuf,
        /// The label file.
        label: PathBuf,
        /// Largest absolute element difference.
        max_abs_diff: f64,
        /// The tolerance in force.
        tolerance: f64,
    },
    /// A folder that should hold data has none of the expected files.
    #[error("{path}: no {expected} found")]
    Empty {
        /// The folder involved.
        path: PathBuf,
        /// What was looked for.
        expected: String,
    },
    /// A file a dataset layout requires is missing.
    #[error("{path}: missing ({context})")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// Why it was needed.
        context: String,
    },
    /// A DICOM file could not be parsed or decoded, or lacks a required attribute.
    #[error("{path}: DICOM: {reason}")]
    Dicom {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The underlying error (a decoder's or parser's), if there is one; its message is part
        /// of `reason` too.
        #[source]
        source: Option<BoxError>,
    },
    /// DICOM files do not form one consistent series.
    #[error("{path}: DICOM series: {reason}")]
    DicomSeries {
        /// The folder involved.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
    /// A PNG frame could not be decoded or has the wrong size/colour type.
    #[error("{path}: image: {reason}")]
    Image {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The underlying error (a decoder's or parser's), if there is one; its message is part
        /// of `reason` too.
        #[source]
        source: Option<BoxError>,
    },
    /// A dataset description (e.g. MSD `dataset.json`) is malformed.
    #[error("{path}: dataset description: {reason}")]
    Dataset {
        /// The file or folder involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The underlying error (a decoder's or parser's), if there is one; its message is part
        /// of `reason` too.
        #[source]
        source: Option<BoxError>,
    },
    /// An array could not take the shape computed for it (an internal inconsistency, never
    /// expected on valid input).
    #[error("{what}: {source}")]
    Shape {
        /// Which array.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: ndarray::ShapeError,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A function argument is invalid (out-of-range index, empty input, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl VolumeError {
    /// A [`VolumeError::InvalidHeader`] without an underlying error.
    pub fn invalid_header(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::InvalidHeader {
            path: path.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// A [`VolumeError::Dicom`] without an underlying error.
    pub fn dicom(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Dicom {
            path: path.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// `context: source` as the reason of an error whose source is `source`.
    pub(crate) fn caused(context: &str, source: impl std::fmt::Display) -> String {
        if context.is_empty() {
            source.to_string()
        } else {
            format!("{context}: {source}")
        }
    }

    /// Wraps an IO error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
