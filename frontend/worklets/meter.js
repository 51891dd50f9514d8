// Level meter, passing audio through: posts {peak, rms, time, firstLoud, lastLoud} every 20 ms of audio.
// Times are AudioContext times (the clock the page's latency figures use): the end of the block, and the
// first and last sample above -40 dBFS in it (null when none).
const LOUD = 0.01;
class MeterProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.window = Math.round(sampleRate * 0.02);
    this.count = 0;
    this.peak = 0;
    this.sum = 0;
    this.firstLoud = null;
    this.lastLoud = null;
  }

  process(inputs, outputs) {
    const input = inputs[0];
    const output = outputs[0];
    const channel = input && input[0];
    for (let c = 0; c < output.length; c++) {
      if (input && input[c]) output[c].set(input[c]);
      else if (channel) output[c].set(channel);
    }
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const v = Math.abs(channel[i]);
      if (v > this.peak) this.peak = v;
      if (v > LOUD) {
        const at = currentTime + i / sampleRate;
        if (this.firstLoud === null) this.firstLoud = at;
        this.lastLoud = at;
      }
      this.sum += v * v;
      if (++this.count === this.window) {
        const time = currentTime + (i + 1) / sampleRate;
        const rms = Math.sqrt(this.sum / this.count);
        this.port.postMessage({ peak: this.peak, rms, time, firstLoud: this.firstLoud, lastLoud: this.lastLoud });
        this.count = 0;
        this.peak = 0;
        this.sum = 0;
        this.firstLoud = null;
        this.lastLoud = null;
      }
    }
    return true;
  }
}

registerProcessor("voxloop-meter", MeterProcessor);
