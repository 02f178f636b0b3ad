// One WebSocket for all rooms, reconnecting with exponential backoff and
// jitter. The app rejoins its rooms from onopen, passing `since` so nothing
// sent while we were away is missed.

const PING_MS = 25000;
const BASE_MS = 500;
const MAX_MS = 10000;

export class ChatSocket {
  constructor({ url, onOpen, onFrame, onDown, onGiveUpCheck }) {
    this.url = url;           // () => string, so a fresh token is used each time
    this.onOpen = onOpen;
    this.onFrame = onFrame;
    this.onDown = onDown;     // (attempt, delayMs) when the connection is lost
    this.onGiveUpCheck = onGiveUpCheck; // called every few failures: may stop()
    this.ws = null;
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    this.pingTimer = null;
    this.openedAt = 0;
  }

  get connected() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN; }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onerror = ws.onmessage = ws.onopen = null;
      try { ws.close(1000, 'bye'); } catch { /* already closed */ }
    }
  }

  // Reconnect now (e.g. the browser came back online) instead of waiting.
  kick() {
    if (this.stopped || this.connected) return;
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
    clearTimeout(this.timer);
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.openedAt = Date.now();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_MS);
      this.onOpen();
    };
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame && typeof frame.type === 'string') this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      // 1008 (policy) is how the server says the session was revoked: ask
      // at once instead of after a few failed reconnects.
      if (ev.code === 1008 && this.onGiveUpCheck) this.onGiveUpCheck();
      this.ws = null;
      clearInterval(this.pingTimer);
      // A connection that stayed up a while resets the backoff.
      if (this.openedAt && Date.now() - this.openedAt > 5000) this.attempt = 0;
      this.openedAt = 0;
      this.scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const exp = Math.min(MAX_MS, BASE_MS * 2 ** this.attempt);
    // "Equal jitter": half fixed, half random, so clients spread out after a
    // server restart but none retries in a tight loop.
    const delay = Math.round(exp / 2 + Math.random() * (exp / 2));
    this.attempt++;
    this.onDown(this.attempt, delay);
    if (this.attempt % 3 === 0 && this.onGiveUpCheck) this.onGiveUpCheck();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(frame) {
    if (!this.connected) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }
}
