//! The local side of interactive sessions (`run -i/-t`, `exec -i/-t`): raw mode, our size,
//! and tasks that forward our stdin and window-size changes as protocol messages.

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;

/// Our terminal's size, if stdout is one.
pub fn term_size() -> Option<(u32, u32)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the winsize we own.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row as u32, ws.ws_col as u32))
}

/// Raw mode on our terminal for as long as it lives.
pub struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    pub fn enter(want: bool) -> RawMode {
        use nix::sys::termios;
        if !want || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return RawMode(None);
        }
        let stdin = std::io::stdin();
        let Ok(orig) = termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Forwards our stdin as `data(bytes)` messages, then `close` at its end.
pub fn forward_stdin<T: Send + 'static>(
    tx: Sender<T>,
    data: fn(Vec<u8>) -> T,
    close: T,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(close).await;
                    return;
                }
                Ok(n) => {
                    if tx.send(data(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Forwards our terminal's size on every SIGWINCH as `resize(rows, cols)`.
pub fn forward_resizes<T: Send + 'static>(
    tx: Sender<T>,
    resize: fn(u32, u32) -> T,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = term_size() {
                if tx.send(resize(rows, cols)).await.is_err() {
                    return;
                }
            }
        }
    })
}
