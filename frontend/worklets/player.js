// Agent audio from the WebSocket: a ring buffer played at the context's rate with a small prebuffer.
// Messages in: {type: "turn", turnId} before a turn's first samples, Int16 PCM frames (ArrayBuffer),
// {type: "clear"} (barge-in: drop everything now). Messages out: {type: "played", turnId, seconds}
// every ~100 ms while playing and at once on clear: where playback of that turn is.
const PREBUFFER_S = 0.04;
const REPORT_S = 0.1;

class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(sampleRate * 20);
    this.read = 0;
    this.write = 0;
    this.marks = []; // [absolute write position, turnId], in order
    this.turnId = null;
    this.turnStart = 0; // absolute read position where the current turn began
    this.playing = false;
    this.lastReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(data) {
    if (data instanceof ArrayBuffer) {
      const pcm = new Int16Array(data);
      for (let i = 0; i < pcm.length; i++) {
        if (this.write - this.read >= this.ring.length) break; // full: drop (never happens in practice)
        this.ring[this.write % this.ring.length] = pcm[i] / 0x8000;
        this.write++;
      }
    } else if (data.type === "turn") {
      this.marks.push([this.write, data.turnId]);
    } else if (data.type === "clear") {
      this.report(true);
      this.read = this.write;
      this.marks = [];
      this.turnId = null;
      this.playing = false;
    }
  }

  report(force) {
    if (this.turnId === null) return;
    const played = this.read - this.turnStart;
    if (force || played - this.lastReport >= REPORT_S * sampleRate) {
      this.lastReport = played;
      this.port.postMessage({ type: "played", turnId: this.turnId, seconds: played / sampleRate });
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const available = this.write - this.read;
    if (!this.playing && available >= PREBUFFER_S * sampleRate) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing || this.read >= this.write) {
        out[i] = 0;
        this.playing = false; // underrun: wait for the prebuffer again
        continue;
      }
      while (this.marks.length && this.marks[0][0] <= this.read) {
        this.report(true); // the previous turn's last position
        this.turnId = this.marks.shift()[1];
        this.turnStart = this.read;
        this.lastReport = 0;
      }
      out[i] = this.ring[this.read % this.ring.length];
      this.read++;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.report(false);
    return true;
  }
}

registerProcessor("voxloop-player", PlayerProcessor);
