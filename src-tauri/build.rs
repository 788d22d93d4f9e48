//! Tauri's build step: reads `tauri.conf.json` and `capabilities/`, and prepares the
//! context that `tauri::generate_context!` embeds.

fn main() {
    tauri_build::build();
}
