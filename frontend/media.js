// The page's audio: microphone capture, level meters, and agent playback, in one AudioContext whose
// clock the latency figures use. WebSocket path: capture and player worklets carry 16-bit PCM.
// WebRTC path: the microphone track goes to the peer; the remote stream plays through WebAudio.
export const RATE = 48000;

export class MicrophoneError extends Error {}

export class Media extends EventTarget {
  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MicrophoneError(
        "This page can only use the microphone over HTTPS or on localhost. Open it from a secure address.",
      );
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (e) {
      if (e.name === "NotAllowedError" || e.name === "SecurityError") {
        throw new MicrophoneError(
          "Microphone access was denied. Allow the microphone for this site in the browser's settings, then press Connect again.",
        );
      }
      if (e.name === "NotFoundError" || e.name === "OverconstrainedError") {
        throw new MicrophoneError("No microphone was found. Plug one in and press Connect again.");
      }
      throw new MicrophoneError(`The microphone could not be opened (${e.name}: ${e.message}).`);
    }
    this.ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    await Promise.all(
      ["capture", "player", "meter"].map((name) =>
        this.ctx.audioWorklet.addModule(new URL(`./worklets/${name}.js`, import.meta.url)),
      ),
    );
    if (this.ctx.state === "suspended") await this.ctx.resume();
    this.mic = this.ctx.createMediaStreamSource(this.stream);
    this.inMeter = this.meter("input-level");
    // Nodes that only listen still hang off the destination (through a muted gain), so they are pulled.
    this.mute = new GainNode(this.ctx, { gain: 0 });
    this.mute.connect(this.ctx.destination);
    this.mic.connect(this.inMeter).connect(this.mute);
    this.outMeter = this.meter("output-level");
    this.outMeter.connect(this.ctx.destination);
  }

  meter(eventName) {
    const node = new AudioWorkletNode(this.ctx, "voxloop-meter", { outputChannelCount: [1] });
    node.port.onmessage = (e) => this.dispatchEvent(new CustomEvent(eventName, { detail: e.data }));
    return node;
  }

  get micTrack() {
    return this.stream.getAudioTracks()[0];
  }

  // -- WebSocket audio path ---------------------------------------------------------------------
  startPcm(onFrame) {
    this.capture = new AudioWorkletNode(this.ctx, "voxloop-capture", { outputChannelCount: [1] });
    this.capture.port.onmessage = (e) => onFrame(e.data);
    this.mic.connect(this.capture).connect(this.mute);
    this.player = new AudioWorkletNode(this.ctx, "voxloop-player", { outputChannelCount: [1] });
    this.player.port.onmessage = (e) => this.dispatchEvent(new CustomEvent("played", { detail: e.data }));
    this.player.connect(this.outMeter);
  }

  playTurn(turnId) {
    if (this.player) this.player.port.postMessage({ type: "turn", turnId });
  }

  play(buffer) {
    if (this.player) this.player.port.postMessage(buffer, [buffer]);
  }

  clear() {
    if (this.player) this.player.port.postMessage({ type: "clear" });
  }

  // -- WebRTC audio path ------------------------------------------------------------------------
  playRemote(stream, audioElement) {
    // Chromium feeds remote WebRTC audio into WebAudio only while a media element plays the stream;
    // the element stays muted and WebAudio plays it (so the meter and the clock see what is heard).
    audioElement.srcObject = stream;
    audioElement.muted = true;
    audioElement.play().catch(() => {});
    this.remote = this.ctx.createMediaStreamSource(stream);
    this.remote.connect(this.outMeter);
  }

  stop() {
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    if (this.ctx) this.ctx.close();
    this.stream = this.ctx = this.player = this.capture = this.remote = null;
  }
}
