//! One admission, repeated, for an instruction counter: `instructions <case 0-2> <iterations>`.
//! `cargo xtask bench instructions` runs it under callgrind twice and takes the difference, so
//! the setup is not counted and the figure repeats exactly on a noisy machine.

#[path = "../benches/support/mod.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: instructions <case 0-2> <iterations>";
    let case: usize = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let injector = support::injector();
    let policy = support::policy(&injector, false);
    let (_, pod) = support::cases().into_iter().nth(case).expect(usage);
    let body = support::review_body(&pod);
    for _ in 0..iterations {
        std::hint::black_box(support::admit(&injector, &policy, std::hint::black_box(&body)));
    }
}
