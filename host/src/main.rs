//! The `aopsfs` command line.

fn main() {
    println!("aopsfs: command line under construction");
}
