// The session's WebSocket (docs/protocol.md): JSON events in, control messages out, PCM both ways on
// the WebSocket audio path. Emits each server event as a DOM event of its type ("transcript.final"...),
// plus "binary" (PCM ArrayBuffer), "open", "close" (with {detail: {code, reason, willRetry}}).
export class Session extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.ready = null;
    this.update = null; // the session.update we (re)send on every connection
    this.wanted = false; // the user wants to be connected: reconnect when the line drops
    this.retries = 0;
    this.retryTimer = null;
  }

  open(update) {
    this.update = update;
    this.wanted = true;
    this.retries = 0;
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.retries = 0;
      this.send(this.update);
      this.dispatchEvent(new CustomEvent("open"));
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        this.dispatchEvent(new CustomEvent("binary", { detail: e.data }));
        return;
      }
      let message;
      try {
        message = JSON.parse(e.data);
      } catch {
        return;
      }
      if (message.type === "session.ready") this.ready = message;
      this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = null;
      const willRetry = this.wanted && e.code !== 1008;
      this.dispatchEvent(new CustomEvent("close", { detail: { code: e.code, reason: e.reason, willRetry } }));
      if (willRetry) {
        const delay = Math.min(10000, 500 * 2 ** this.retries++);
        this.retryTimer = setTimeout(() => this.connect(), delay);
      }
    };
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (this.connected) this.ws.send(JSON.stringify(message));
  }

  sendAudio(buffer) {
    if (this.connected && this.ready) this.ws.send(buffer);
  }

  close() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "hang up");
    this.ws = null;
  }

  // Resolve with the next event of `type` (optionally matching `test`), or reject after `timeoutMs`.
  next(type, timeoutMs = 10000, test = () => true) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.removeEventListener(type, on);
        reject(new Error(`no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (e) => {
        if (!test(e.detail)) return;
        clearTimeout(timer);
        this.removeEventListener(type, on);
        resolve(e.detail);
      };
      this.addEventListener(type, on);
    });
  }
}
