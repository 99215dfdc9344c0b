//! What both binaries (`zkminer`, and `zkpool` through its demo's dependency on
//! this crate) do as processes: end quietly on a closed pipe, wait for a stop
//! signal.

/// A reader that stops reading (`zkpool ledger | head`) is not an error: std's
/// `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE), so a
/// panic hook turns exactly that panic into a quiet exit 0, as ripgrep does. Any
/// other panic keeps the default report.
pub fn exit_quietly_on_closed_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("");
        let closed_pipe = (message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr"))
            && message.contains("Broken pipe");
        if closed_pipe {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
