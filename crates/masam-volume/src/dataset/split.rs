//! The splits of the authors' experiments (BTCV test cases 0035–0040, the prostate sites' test
//! lists, EndoVis18 test sequences 1–4, fold 0 of MSD-Pancreas) and a seeded random split.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::CaseFiles;
use crate::error::{Result, VolumeError};

/// BTCV test ids: 0035–0040.
pub const BTCV_TEST_IDS: [&str; 6] = ["0035", "0036", "0037", "0038", "0039", "0040"];

/// Splits BTCV cases into (train, test) with the reference test set 0035–0040. Cases without a
/// label are dropped from both.
pub fn btcv_reference_split(cases: &[CaseFiles]) -> (Vec<CaseFiles>, Vec<CaseFiles>) {
    cases
        .iter()
        .filter(|c| c.label.is_some())
        .cloned()
        .partition(|c| !BTCV_TEST_IDS.contains(&c.id.as_str()))
}

/// The reference prostate test ids of site `A`–`F` (`None` for other sites).
pub fn prostate_test_ids(site: char) -> Option<&'static [&'static str]> {
    Some(match site.to_ascii_uppercase() {
        'A' | 'B' => &["0003", "0008", "0012", "0015", "0018", "0026"],
        'C' => &["0003", "0008", "0013", "0015"],
        'D' => &["0001", "0032", "0034"],
        'E' => &["0000", "0004", "0009"],
        'F' => &["0038", "0041", "0046"],
        _ => return None,
    })
}

/// Splits by an explicit list of test ids: (train, test).
pub fn split_by_ids(cases: &[CaseFiles], test_ids: &[&str]) -> (Vec<CaseFiles>, Vec<CaseFiles>) {
    cases
        .iter()
        .cloned()
        .partition(|c| !test_ids.contains(&c.id.as_str()))
}

/// EndoVis18 case id of sequence `k`: training sequences are `00kk`, test sequences `00(k+20)`.
pub fn endovis_case_id(seq: u32, test: bool) -> String {
    format!("00{:02}", if test { seq + 20 } else { seq })
}

/// A seeded shuffle split into (train, val, test) with the given fractions (the rest is train).
/// Used for MSD pancreas, whose `split_pancreas.pkl` (fold 0: 196/28/57) is not distributed.
pub fn seeded_split(
    cases: &[CaseFiles],
    val_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<CaseFiles>, Vec<CaseFiles>, Vec<CaseFiles>)> {
    if !(0.0..=1.0).contains(&val_fraction)
        || !(0.0..=1.0).contains(&test_fraction)
        || val_fraction + test_fraction > 1.0
    {
        return Err(VolumeError::InvalidArgument(format!(
            "split fractions val {val_fraction} + test {test_fraction} must lie in [0, 1]"
        )));
    }
    let mut v = cases.to_vec();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n = v.len();
    let n_test = (n as f64 * test_fraction).round() as usize;
    let n_val = ((n as f64 * val_fraction).round() as usize).min(n - n_test);
    let test = v.split_off(n - n_test);
    let val = v.split_off(v.len() - n_val);
    Ok((v, val, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str) -> CaseFiles {
        CaseFiles {
            id: id.into(),
            image: format!("img{id}.nii.gz").into(),
            label: Some(format!("label{id}.nii.gz").into()),
        }
    }

    #[test]
    fn btcv_split_is_the_reference() {
        let ids: Vec<String> = (1..=40)
            .filter(|i| !(11..=20).contains(i))
            .map(|i| format!("{i:04}"))
            .collect();
        let cases: Vec<CaseFiles> = ids.iter().map(|i| c(i)).collect();
        let (train, test) = btcv_reference_split(&cases);
        assert_eq!(train.len(), 24);
        assert_eq!(
            test.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            BTCV_TEST_IDS
        );
    }

    #[test]
    fn seeded_split_is_deterministic_and_disjoint() {
        let cases: Vec<CaseFiles> = (0..281).map(|i| c(&format!("{i:04}"))).collect();
        let a = seeded_split(&cases, 0.1, 0.2, 7).unwrap();
        let b = seeded_split(&cases, 0.1, 0.2, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.0.len(), a.1.len(), a.2.len()), (197, 28, 56));
        assert!(seeded_split(&cases, 0.9, 0.2, 7).is_err());
        assert_eq!(endovis_case_id(3, true), "0023");
        assert_eq!(prostate_test_ids('d').unwrap(), &["0001", "0032", "0034"]);
    }
}
