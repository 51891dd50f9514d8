// WebRTC audio: the offer and answer travel on the session's WebSocket (no second signaling server).
// ICE gathering completes before the offer is sent (no trickle). No ICE servers unless configured.
function waitFor(pc, done, failed, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out`)), timeoutMs);
    const check = () => {
      if (done()) {
        clearTimeout(timer);
        resolve();
      } else if (failed()) {
        clearTimeout(timer);
        reject(new Error(`${what} failed`));
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("connectionstatechange", check);
    check();
  });
}

const REFUSALS = ["bad_sdp", "not_webrtc", "already_connected"];

// Send the offer; resolve with the server's webrtc.answer, reject on its refusal or a timeout.
function answerFor(session, sdp, timeoutMs) {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      session.removeEventListener("webrtc.answer", onAnswer);
      session.removeEventListener("error", onError);
    };
    const onAnswer = (e) => {
      done();
      resolve(e.detail);
    };
    const onError = (e) => {
      if (!REFUSALS.includes(e.detail.code)) return;
      done();
      reject(new Error(e.detail.message));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error("the server did not answer the WebRTC offer"));
    }, timeoutMs);
    session.addEventListener("webrtc.answer", onAnswer);
    session.addEventListener("error", onError);
    session.send({ type: "webrtc.offer", sdp });
  });
}

export async function connectRtc(session, micTrack, { iceServers = [], timeoutMs = 8000 } = {}) {
  const pc = new RTCPeerConnection({ iceServers });
  const remote = new Promise((resolve) => {
    pc.ontrack = (e) => resolve(e.streams[0] || new MediaStream([e.track]));
  });
  pc.addTransceiver(micTrack, { direction: "sendrecv" });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(pc, () => pc.iceGatheringState === "complete", () => false, 3000, "ICE gathering");
    const reply = await answerFor(session, pc.localDescription.sdp, timeoutMs);
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    await waitFor(
      pc,
      () => pc.connectionState === "connected",
      () => ["failed", "closed"].includes(pc.connectionState),
      timeoutMs,
      "WebRTC connection",
    );
    return { pc, remote: await remote };
  } catch (e) {
    pc.close();
    throw e;
  }
}
