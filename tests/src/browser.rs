//! A headless Chromium a test can click through: the Chrome DevTools Protocol over
//! a WebSocket, both spoken here with std alone (blocking; call it from
//! `spawn_blocking`). It does what a person does on the dashboard — open a page,
//! type, click, answer a confirmation dialog, download a file — and reads the DOM
//! back, so a test asserts what the person would see. `--dump-dom` cannot click.
//!
//! Only what the tests need: one page, text frames, no TLS, no compression.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    ws: WebSocket,
    session: String,
    next_id: u64,
    /// Events that arrived while waiting for a response, oldest first.
    events: VecDeque<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (see [`crate::tools`]) with a fresh profile and a
    /// `width` x `height` page; downloads go to `downloads`.
    pub fn launch(width: u32, height: u32, downloads: &Path) -> anyhow::Result<Browser> {
        let chromium = crate::tools::require("chromium").map_err(anyhow::Error::msg)?;
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", chromium.display()))?;
        // Chromium names its DevTools endpoint on stderr; the rest of stderr is
        // drained by a thread, so a chatty browser never blocks on a full pipe.
        let mut lines = BufReader::new(child.stderr.take().context("chromium's stderr")?).lines();
        let mut seen = Vec::new();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(at) = line.find("ws://") {
                        break line[at..].trim().to_owned();
                    }
                    seen.push(line);
                }
                _ => {
                    let _ = child.kill();
                    bail!(
                        "chromium exited before naming its DevTools endpoint:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let ws = WebSocket::connect(&url)?;
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            events: VecDeque::new(),
            _profile: profile,
        };
        let target = b.browser_call("Target.createTarget", json!({"url": "about:blank"}))?;
        let target = target["targetId"]
            .as_str()
            .context("no targetId")?
            .to_owned();
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_owned();
        b.call("Page.enable", json!({}))?;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        std::fs::create_dir_all(downloads)?;
        b.browser_call(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads.canonicalize()?}),
        )?;
        Ok(b)
    }

    /// Opens `url` in the page.
    pub fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        let r = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r["errorText"].as_str() {
            bail!("cannot open {url}: {e}");
        }
        Ok(())
    }

    /// The value of a JavaScript expression in the page (a promise is awaited).
    pub fn eval(&mut self, expr: &str) -> anyhow::Result<Value> {
        let id = self.send(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        Self::value(expr, self.response(id)?)
    }

    fn value(expr: &str, r: Value) -> anyhow::Result<Value> {
        if let Some(e) = r.get("exceptionDetails") {
            bail!(
                "{expr}: {}",
                e["exception"]["description"]
                    .as_str()
                    .unwrap_or(&e.to_string())
            );
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` every 100 ms until it is truthy (not null, false, 0 or "") and
    /// returns it; fails after `timeout` saying what was awaited and the page text.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, expr: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expr)?;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText").unwrap_or_default();
                bail!("timed out after {timeout:?} waiting for {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `selector` names.
    pub fn click(&mut self, selector: &str) -> anyhow::Result<()> {
        self.eval(&click_js(selector)).map(drop)
    }

    /// Clicks `selector`, which must open a confirmation dialog; answers it
    /// (`accept`) and returns the dialog's message.
    pub fn click_and_answer(&mut self, selector: &str, accept: bool) -> anyhow::Result<String> {
        // The click blocks in the page until the dialog is answered: send it, wait
        // for the dialog, answer, then collect the click's response.
        let click = self.send(
            "Runtime.evaluate",
            json!({"expression": click_js(selector), "returnByValue": true}),
        )?;
        let dialog = self.event("Page.javascriptDialogOpening", Duration::from_secs(20))?;
        let answer = self.send("Page.handleJavaScriptDialog", json!({ "accept": accept }))?;
        self.response(answer)?;
        Self::value(selector, self.response(click)?)?;
        Ok(dialog["message"].as_str().unwrap_or_default().to_owned())
    }

    /// Sets the value of the input `selector` names, as typing would.
    pub fn type_into(&mut self, selector: &str, text: &str) -> anyhow::Result<()> {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) throw new Error('no ' + {sel}); e.value = {text}; e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()",
            sel = json!(selector),
            text = json!(text)
        ))
        .map(drop)
    }

    /// Saves a PNG of the page at `path`.
    pub fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().context("no screenshot data")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Waits until `dir/name` is fully downloaded and returns its path.
    pub fn downloaded(
        &mut self,
        dir: &Path,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        let deadline = Instant::now() + timeout;
        // Chromium writes `name.crdownload` and renames it when done.
        while !path.exists() || dir.join(format!("{name}.crdownload")).exists() {
            if Instant::now() > deadline {
                bail!("{} was not downloaded within {timeout:?}", path.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(path)
    }

    /// A command to the page's session; its result.
    fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.send(method, params)?;
        self.response(id)
    }

    /// A command to the browser itself (no session).
    fn browser_call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(&json!({"id": id, "method": method, "params": params}).to_string())?;
        self.response(id)
    }

    fn send(&mut self, method: &str, params: Value) -> anyhow::Result<u64> {
        self.next_id += 1;
        let id = self.next_id;
        self.ws.send(
            &json!({"id": id, "method": method, "params": params, "sessionId": self.session})
                .to_string(),
        )?;
        Ok(id)
    }

    fn response(&mut self, id: u64) -> anyhow::Result<Value> {
        loop {
            let m: Value = serde_json::from_str(&self.ws.recv()?)?;
            if m["id"].as_u64() == Some(id) {
                if let Some(e) = m.get("error") {
                    bail!("DevTools command {id} failed: {e}");
                }
                return Ok(m["result"].clone());
            }
            if m.get("method").is_some() {
                self.events.push_back(m);
            }
        }
    }

    fn event(&mut self, method: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                let e = self.events.remove(i).expect("the position just found");
                return Ok(e["params"].clone());
            }
            if Instant::now() > deadline {
                bail!("no {method} within {timeout:?}");
            }
            let m: Value = serde_json::from_str(&self.ws.recv()?)?;
            if m.get("method").is_some() {
                self.events.push_back(m);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn click_js(selector: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({sel}); if (!e) throw new Error('nothing to click at ' + {sel}); e.click(); }})()",
        sel = json!(selector)
    )
}

/// A client WebSocket (RFC 6455) over plain TCP: text messages, masked frames
/// out, fragmented frames in, pings answered.
struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    fn connect(url: &str) -> anyhow::Result<WebSocket> {
        let rest = url
            .strip_prefix("ws://")
            .with_context(|| format!("not a ws:// URL: {url}"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = TcpStream::connect(host).with_context(|| format!("connect {host}"))?;
        // A browser that stops answering fails the test instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
            anyhow::ensure!(
                head.len() < 8192,
                "the DevTools handshake answer is too long"
            );
        }
        let head = String::from_utf8_lossy(&head);
        anyhow::ensure!(
            head.starts_with("HTTP/1.1 101"),
            "DevTools refused the WebSocket: {head}"
        );
        Ok(WebSocket { stream })
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65_536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand::random();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&f)?;
        Ok(())
    }

    fn send(&mut self, text: &str) -> anyhow::Result<()> {
        self.frame(0x1, text.as_bytes())
    }

    /// The next text message.
    fn recv(&mut self) -> anyhow::Result<String> {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.stream
                .read_exact(&mut h)
                .context("reading from the browser's DevTools socket")?;
            let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0f, h[1] & 0x80 != 0);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut mask = [0u8; 4];
            if masked {
                self.stream.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; usize::try_from(len)?];
            self.stream.read_exact(&mut payload)?;
            if masked {
                for (b, m) in payload.iter_mut().zip(mask.iter().cycle()) {
                    *b ^= m;
                }
            }
            match opcode {
                0x0 | 0x1 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(String::from_utf8(message)?);
                    }
                }
                0x8 => bail!("the browser closed its DevTools socket"),
                0x9 => self.frame(0xA, &payload)?,
                _ => {}
            }
        }
    }
}
