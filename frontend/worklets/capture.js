// Microphone -> 20 ms frames of 16-bit PCM at the context's rate, posted to the main thread
// (which sends each one as a binary WebSocket frame). Runs on the audio rendering thread.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = Math.round(sampleRate * 0.02);
    this.buffer = new Int16Array(this.frame);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.frame) {
        this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
        this.buffer = new Int16Array(this.frame);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("voxloop-capture", CaptureProcessor);
