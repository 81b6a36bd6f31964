// The page side of every scenario: it drives the sockets and does the timing (performance.now()).
//
// Each scenario is a function of one JSON argument that resolves with a JSON result. Results
// always carry `lost` and `reordered`: every message carries its sequence number (text: "<seq>:"
// then padding; binary: a little-endian uint32 at offset 0) and the receiver checks it.
// A scenario never waits forever: `within()` gives up after `idleMs` without progress and the
// result then says `stalled: true` with what was missing counted as lost.
"use strict";

(() => {
  const now = () => performance.now();

  function textMessage(seq, size) {
    const head = `${seq}:`;
    return head + "x".repeat(Math.max(0, size - head.length));
  }

  function binaryMessage(seq, size) {
    const buffer = new ArrayBuffer(Math.max(4, size));
    new DataView(buffer).setUint32(0, seq, true);
    return buffer;
  }

  function message(seq, size, binary) {
    return binary ? binaryMessage(seq, size) : textMessage(seq, size);
  }

  function seqOf(data) {
    if (typeof data === "string") return parseInt(data, 10);
    return new DataView(data).getUint32(0, true);
  }

  function sizeOf(data) {
    return typeof data === "string" ? data.length : data.byteLength;
  }

  // Counts messages that do not arrive in sequence, and which sequence numbers arrived.
  class OrderCheck {
    constructor(expected) {
      this.expected = expected;
      this.next = 0;
      this.reordered = 0;
      this.seen = new Set();
    }
    add(seq) {
      if (seq !== this.next) this.reordered += 1;
      this.next = seq + 1;
      this.seen.add(seq);
    }
    get done() {
      return this.seen.size >= this.expected;
    }
    get lost() {
      return this.expected - this.seen.size;
    }
  }

  // Resolves when `promise` does, or with `onStall()` after `idleMs` without `progress()` calls.
  function within(idleMs, executor) {
    return new Promise((resolve) => {
      let timer;
      const progress = () => {
        clearTimeout(timer);
        timer = setTimeout(() => resolve({ stalled: true }), idleMs);
      };
      progress();
      executor(progress, (value) => {
        clearTimeout(timer);
        resolve({ stalled: false, value });
      });
    });
  }

  function open(url, idleMs, binaryType = "arraybuffer") {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = binaryType;
      const timer = setTimeout(() => reject(new Error(`${url} did not open in ${idleMs} ms`)), idleMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve(ws);
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error(`${url} failed to open`));
      };
    });
  }

  function closeAll(sockets, idleMs) {
    return within(idleMs, (progress, done) => {
      let open = sockets.length;
      if (open === 0) done();
      for (const ws of sockets) {
        ws.onclose = () => {
          progress();
          if (--open === 0) done();
        };
        ws.close(1000);
      }
    });
  }

  function percentile(sorted, p) {
    if (sorted.length === 0) return null;
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  }

  function latencies(values) {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50_ms: percentile(sorted, 50), p99_ms: percentile(sorted, 99), max_ms: sorted.at(-1) ?? null };
  }

  // Send `count` messages at once, wait for every echo; throughput from first send to last echo.
  async function echo({ url, count, size, binary, idleMs }) {
    const ws = await open(url, idleMs);
    const check = new OrderCheck(count);
    const start = now();
    const outcome = await within(idleMs, (progress, done) => {
      ws.onmessage = (event) => {
        progress();
        check.add(seqOf(event.data));
        if (check.done) done();
      };
      for (let seq = 0; seq < count; seq++) ws.send(message(seq, size, binary));
    });
    const ms = now() - start;
    ws.close(1000);
    return {
      ms,
      per_s: (check.seen.size / ms) * 1000,
      mib_per_s: (check.seen.size * size) / 1048576 / (ms / 1000),
      per_message_ms: ms / count,
      lost: check.lost,
      reordered: check.reordered,
      stalled: outcome.stalled,
    };
  }

  // One message in flight at a time: the round-trip latency distribution.
  async function pingPong({ url, count, size, idleMs }) {
    const ws = await open(url, idleMs);
    const check = new OrderCheck(count);
    const times = [];
    let stalled = false;
    for (let seq = 0; seq < count && !stalled; seq++) {
      const start = now();
      const outcome = await within(idleMs, (_progress, done) => {
        ws.onmessage = (event) => done(event.data);
        ws.send(textMessage(seq, size));
      });
      if (outcome.stalled) stalled = true;
      else {
        times.push(now() - start);
        check.add(seqOf(outcome.value));
      }
    }
    ws.close(1000);
    return { ...latencies(times), lost: check.lost, reordered: check.reordered, stalled };
  }

  // Page -> peer: send `count` binary messages of `size`; the peer acknowledges each ("<seq> <size>").
  async function upload({ url, count, size, idleMs }) {
    const ws = await open(url, idleMs);
    const check = new OrderCheck(count);
    let wrongSize = 0;
    const start = now();
    const outcome = await within(idleMs, (progress, done) => {
      ws.onmessage = (event) => {
        progress();
        const [seq, length] = event.data.split(" ").map(Number);
        if (length !== size) wrongSize += 1;
        check.add(seq);
        if (check.done) done();
      };
      for (let seq = 0; seq < count; seq++) ws.send(binaryMessage(seq, size));
    });
    const ms = now() - start;
    ws.close(1000);
    return {
      ms,
      per_message_ms: ms / count,
      mib_per_s: (check.seen.size * size) / 1048576 / (ms / 1000),
      lost: check.lost + wrongSize,
      reordered: check.reordered,
      stalled: outcome.stalled,
    };
  }

  // Peer -> page: ask for `count` binary messages of `size`, time until the last has arrived.
  async function download({ url, count, size, idleMs }) {
    const ws = await open(url, idleMs);
    const check = new OrderCheck(count);
    let wrongSize = 0;
    const start = now();
    const outcome = await within(idleMs, (progress, done) => {
      ws.onmessage = (event) => {
        progress();
        if (typeof event.data === "string") return; // the "end" marker
        if (event.data.byteLength !== size) wrongSize += 1;
        check.add(seqOf(event.data));
        if (check.done) done();
      };
      ws.send(`${count} ${size}`);
    });
    const ms = now() - start;
    ws.close(1000);
    return {
      ms,
      per_message_ms: ms / count,
      mib_per_s: (check.seen.size * size) / 1048576 / (ms / 1000),
      lost: check.lost + wrongSize,
      reordered: check.reordered,
      stalled: outcome.stalled,
    };
  }

  // `sockets` sockets at once: time to open them all, then each does `echoes` round trips
  // (one at a time per socket, all sockets concurrently), then all close.
  async function manySockets({ url, sockets, echoes, size, idleMs }) {
    const openStart = now();
    const list = await Promise.all(Array.from({ length: sockets }, () => open(url, idleMs)));
    const openMs = now() - openStart;
    const checks = list.map(() => new OrderCheck(echoes));
    const start = now();
    const outcome = await within(idleMs, (progress, done) => {
      let pending = sockets;
      list.forEach((ws, index) => {
        const check = checks[index];
        ws.onmessage = (event) => {
          progress();
          check.add(seqOf(event.data));
          if (check.seen.size < echoes) ws.send(textMessage(check.seen.size, size));
          else if (--pending === 0) done();
        };
        ws.send(textMessage(0, size));
      });
    });
    const ms = now() - start;
    const closed = await closeAll(list, idleMs);
    const total = sockets * echoes;
    return {
      ms,
      open_ms: openMs,
      per_message_ms: ms / total,
      per_s: (total / ms) * 1000,
      lost: checks.reduce((sum, check) => sum + check.lost, 0),
      reordered: checks.reduce((sum, check) => sum + check.reordered, 0),
      stalled: outcome.stalled || closed.stalled,
    };
  }

  // `count` times in a row: new WebSocket(url) until `open`, then close it.
  async function openLatency({ url, count, idleMs }) {
    const times = [];
    for (let i = 0; i < count; i++) {
      const start = now();
      const ws = await open(url, idleMs);
      times.push(now() - start);
      const closed = await closeAll([ws], idleMs);
      if (closed.stalled) return { ...latencies(times), lost: 0, reordered: 0, stalled: true };
    }
    return { ...latencies(times), lost: 0, reordered: 0, stalled: false };
  }

  // Alternate Blob and text messages; receive as Blobs (binaryType "blob"), then check the order.
  async function blobOrder({ url, count, size, idleMs }) {
    const ws = await open(url, idleMs, "blob");
    const received = [];
    const start = now();
    const outcome = await within(idleMs, (progress, done) => {
      ws.onmessage = (event) => {
        progress();
        received.push(event.data);
        if (received.length === count) done();
      };
      for (let seq = 0; seq < count; seq++) {
        ws.send(seq % 2 ? textMessage(seq, size) : new Blob([binaryMessage(seq, size)]));
      }
    });
    const ms = now() - start;
    ws.close(1000);
    const check = new OrderCheck(count);
    let wrongType = 0;
    for (const [index, data] of received.entries()) {
      const isText = typeof data === "string";
      if (isText !== Boolean(index % 2)) wrongType += 1;
      check.add(isText ? seqOf(data) : seqOf(await data.arrayBuffer()));
    }
    return {
      ms,
      per_s: (check.seen.size / ms) * 1000,
      per_message_ms: ms / count,
      lost: check.lost,
      reordered: check.reordered + wrongType,
      stalled: outcome.stalled,
    };
  }

  // Memory, page -> server: send `total` bytes in `chunk`-sized messages as fast as bufferedAmount
  // allows (at most `highWater` queued), to a server that reads slowly; it reports what it got.
  async function slowServerReader({ url, total, chunk, highWater, idleMs }) {
    const ws = await open(url, idleMs);
    const count = Math.ceil(total / chunk);
    const start = now();
    for (let seq = 0; seq < count; seq++) {
      let waitingSince = now();
      while (ws.bufferedAmount > highWater) {
        const before = ws.bufferedAmount;
        await new Promise((resolve) => setTimeout(resolve, 1)); // no event says bufferedAmount fell
        if (ws.bufferedAmount < before) waitingSince = now();
        else if (now() - waitingSince > idleMs) {
          ws.close(1000);
          return { ms: now() - start, lost: count - seq, reordered: 0, stalled: true };
        }
      }
      ws.send(binaryMessage(seq, chunk));
    }
    const sentMs = now() - start;
    const outcome = await within(idleMs, (_progress, done) => {
      ws.onmessage = (event) => done(JSON.parse(event.data));
      ws.send("end");
    });
    const ms = now() - start;
    ws.close(1000);
    if (outcome.stalled) return { ms, sent_ms: sentMs, lost: count, reordered: 0, stalled: true };
    const summary = outcome.value;
    return {
      ms,
      sent_ms: sentMs,
      mib_per_s: summary.bytes / 1048576 / (ms / 1000),
      lost: count - summary.messages + (summary.bytes === count * chunk ? 0 : 1),
      reordered: summary.reordered,
      stalled: false,
    };
  }

  // Memory, server -> page: the server sends `total` bytes as fast as it can; the page handles
  // them at `rate` bytes/s (busy in each message handler, as a page doing real work would be).
  async function slowPageReader({ url, total, chunk, rate, idleMs }) {
    const ws = await open(url, idleMs);
    const count = Math.ceil(total / chunk);
    const check = new OrderCheck(count);
    let bytes = 0;
    const start = now();
    const outcome = await within(idleMs, (progress, done) => {
      ws.onmessage = (event) => {
        progress();
        if (typeof event.data === "string") return;
        check.add(seqOf(event.data));
        bytes += event.data.byteLength;
        const due = start + (bytes / rate) * 1000;
        while (now() < due); // a slow reader: this message's share of the work
        if (check.done) done();
      };
      ws.send(`${count} ${chunk}`);
    });
    const ms = now() - start;
    ws.close(1000);
    return {
      ms,
      mib_per_s: bytes / 1048576 / (ms / 1000),
      lost: check.lost + (bytes === count * chunk || outcome.stalled ? 0 : 1),
      reordered: check.reordered,
      stalled: outcome.stalled,
    };
  }

  // How long this document took to load, from the Navigation Timing entry.
  function loadTiming() {
    const [entry] = performance.getEntriesByType("navigation");
    return {
      load_ms: entry.loadEventStart - entry.startTime,
      dcl_ms: entry.domContentLoadedEventStart - entry.startTime,
      lost: 0,
      reordered: 0,
      stalled: false,
    };
  }

  window.bench = {
    echo,
    pingPong,
    upload,
    download,
    manySockets,
    openLatency,
    blobOrder,
    slowServerReader,
    slowPageReader,
    loadTiming,
  };
})();
