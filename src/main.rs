fn main() {
    std::process::exit(studioize::cli::main());
}
