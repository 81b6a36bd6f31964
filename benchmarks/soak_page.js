// The page side of the soak run (benchmarks/soak.py): it opens WebSockets, sends numbered
// messages and checks that every echo comes back exactly once and in order on its own socket.
//
// Socket `id` of kind `k` opens `${base}/${k}/${id}`. Message `seq` of socket `id` is the text
// "<id>:<seq>" when `seq` is even, and 8 bytes (little-endian uint32 id, then seq) when odd.
"use strict";

(() => {
  const now = () => performance.now();

  function message(id, seq) {
    if (seq % 2 === 0) return `${id}:${seq}`;
    const view = new DataView(new ArrayBuffer(8));
    view.setUint32(0, id, true);
    view.setUint32(4, seq, true);
    return view.buffer;
  }

  // {id, seq, binary}, or null for a payload that is neither form.
  function parse(data) {
    if (typeof data === "string") {
      const match = /^(\d+):(\d+)$/.exec(data);
      return match && { id: Number(match[1]), seq: Number(match[2]), binary: false };
    }
    if (!(data instanceof ArrayBuffer) || data.byteLength !== 8) return null;
    const view = new DataView(data);
    return { id: view.getUint32(0, true), seq: view.getUint32(4, true), binary: true };
  }

  // What one socket received: each expected echo once, in order, of the right type, its own.
  class Tally {
    constructor(id, kind, messages) {
      this.id = id;
      this.kind = kind;
      this.messages = messages;
      this.seen = new Uint8Array(messages);
      this.received = 0;
      this.highest = -1;
      this.duplicated = 0;
      this.reordered = 0;
      this.corrupted = 0;
      this.errors = 0;
      this.opened = false;
      this.ended = false; // closed or failed before every echo came back
      this.settled = false; // every echo is back, or the socket ended
      this.late = 0; // messages after every echo was back: duplicates or strays
    }

    get done() {
      return this.received === this.messages;
    }

    add(data) {
      const got = parse(data);
      if (got === null || got.id !== this.id || got.seq >= this.messages || got.binary !== (got.seq % 2 === 1)) {
        this.corrupted++;
      } else if (this.seen[got.seq]) {
        this.duplicated++;
      } else {
        this.seen[got.seq] = 1;
        this.received++;
        if (got.seq < this.highest) this.reordered++;
        this.highest = Math.max(this.highest, got.seq);
      }
    }
  }

  // Runs `start(progress, settle)`; resolves once `settle()` is called, or with stalled=true
  // when `progress()` has not been called for `idleMs`: a page never waits forever.
  function within(idleMs, start) {
    return new Promise((resolve) => {
      let timer = null;
      const settle = (stalled) => {
        clearTimeout(timer);
        resolve(stalled === true);
      };
      const progress = () => {
        clearTimeout(timer);
        timer = setTimeout(() => settle(true), idleMs);
      };
      progress();
      start(progress, () => settle(false));
    });
  }

  let open = []; // [{ws, tally}] of the sockets not closed by close() yet

  function summary(tallies) {
    const byKind = {};
    for (const t of tallies) {
      const k = (byKind[t.kind] ??= {
        sockets: 0,
        opened: 0,
        failed: 0,
        expected: 0,
        delivered: 0,
        lost: 0,
        duplicated: 0,
        reordered: 0,
        corrupted: 0,
        errors: 0,
      });
      k.sockets++;
      k.opened += t.opened ? 1 : 0;
      k.failed += t.ended && !t.done ? 1 : 0;
      k.expected += t.messages;
      k.delivered += t.received;
      k.lost += t.messages - t.received;
      k.duplicated += t.duplicated;
      k.reordered += t.reordered;
      k.corrupted += t.corrupted;
      k.errors += t.errors;
    }
    return byKind;
  }

  // Open one socket per entry of `kinds` at once; each sends `messages` messages as soon as it
  // opens; resolves when every echo is back (or a socket failed, or nothing moved for idleMs).
  async function exchange({ base, kinds, messages, idleMs }) {
    const tallies = kinds.map((kind, id) => new Tally(id, kind, messages));
    const start = now();
    let openedAt = null;
    let pending = tallies.length;
    let unopened = tallies.length;
    const stalled = await within(idleMs, (progress, settle) => {
      const finish = () => {
        if (--pending === 0) settle();
      };
      if (pending === 0) settle();
      for (const tally of tallies) {
        const ws = new WebSocket(`${base}/${tally.kind}/${tally.id}`);
        ws.binaryType = "arraybuffer";
        open.push({ ws, tally });
        ws.onopen = () => {
          progress();
          tally.opened = true;
          if (--unopened === 0) openedAt = now();
          for (let seq = 0; seq < messages; seq++) ws.send(message(tally.id, seq));
        };
        ws.onmessage = (event) => {
          progress();
          if (tally.settled) {
            tally.late++;
            return;
          }
          tally.add(event.data);
          if (tally.done) {
            tally.settled = true;
            finish();
          }
        };
        ws.onerror = () => {
          tally.errors++;
        };
        ws.onclose = () => {
          if (!tally.settled) {
            tally.settled = true;
            tally.ended = true;
            finish();
          }
        };
      }
    });
    const end = now();
    return {
      stalled,
      open_ms: openedAt === null ? null : openedAt - start,
      total_ms: end - start,
      kinds: summary(tallies),
    };
  }

  // Close `count` of the open sockets (all when null) with code 1000 and wait for their close
  // events; resolves with how many closed cleanly (or stalled=true after idleMs without one).
  async function close({ count, idleMs }) {
    const closing = count === null ? open : open.slice(0, count);
    open = count === null ? [] : open.slice(count);
    let clean = 0;
    let closed = 0;
    const stalled = await within(idleMs, (progress, settle) => {
      let left = closing.length;
      if (left === 0) settle();
      for (const { ws } of closing) {
        ws.onclose = (event) => {
          progress();
          closed++;
          clean += event.wasClean && event.code === 1000 ? 1 : 0;
          if (--left === 0) settle();
        };
        ws.close(1000, "soak done");
      }
    });
    const late = closing.reduce((sum, { tally }) => sum + tally.late, 0);
    return { stalled, closing: closing.length, closed, clean, late };
  }

  window.soak = { exchange, close };
})();
