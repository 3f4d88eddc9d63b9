//! `sqlx::migrate!` embeds the migration files at compile time but only
//! notices edits to files it already knows; a new migration file must also
//! trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
