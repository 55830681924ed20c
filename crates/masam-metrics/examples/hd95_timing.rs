//! Times HD95, ASD, NSD and Dice on a CT-sized pair: two overlapping ellipsoids in a
//! 100 × 512 × 512 (z, y, x) volume at 2.5 × 0.7 × 0.7 mm.
//!
//! `cargo run --release -p masam-metrics --example hd95_timing [-- <z> <y> <x>]`

use std::time::Instant;

use masam_metrics::{
    compute_asd, compute_dice, compute_hd95, compute_surface_dice, EmptyPolicy, Result,
};
use ndarray::Array3;

fn ellipsoid(dim: (usize, usize, usize), c: [f64; 3], r: [f64; 3]) -> Array3<bool> {
    Array3::from_shape_fn(dim, |(z, y, x)| {
        let d = [
            (z as f64 - c[0]) / r[0],
            (y as f64 - c[1]) / r[1],
            (x as f64 - c[2]) / r[2],
        ];
        d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= 1.0
    })
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dim = match args[..] {
        [z, y, x] => (z, y, x),
        _ => (100, 512, 512),
    };
    let (z, y, x) = (dim.0 as f64, dim.1 as f64, dim.2 as f64);
    let gt = ellipsoid(
        dim,
        [z / 2.0, y / 2.0, x / 2.0],
        [z * 0.4, y * 0.35, x * 0.3],
    );
    let pred = ellipsoid(
        dim,
        [z / 2.0 + 2.0, y / 2.0 - 5.0, x / 2.0 + 3.0],
        [z * 0.38, y * 0.36, x * 0.31],
    );
    let spacing = [2.5, 0.7, 0.7];
    println!("volume {dim:?}, {} threads", rayon::current_num_threads());

    let t = Instant::now();
    let dice = compute_dice(pred.view(), gt.view(), &EmptyPolicy::overlap_reference())?;
    println!("dice  {dice:.6}  {:>8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let hd95 = compute_hd95(pred.view(), gt.view(), spacing)?;
    println!("hd95  {hd95:.6} mm  {:>8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let asd = compute_asd(pred.view(), gt.view(), spacing)?;
    println!("asd   {asd:.6} mm  {:>8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let nsd = compute_surface_dice(
        pred.view(),
        gt.view(),
        spacing,
        2.0,
        &EmptyPolicy::surface_dice_deepmind(),
    )?;
    println!("nsd2  {nsd:.6}  {:>8.3} s", t.elapsed().as_secs_f64());
    Ok(())
}
