// cdp_wsroute's WebSocket shim: runs in every document before any page script.
//
// Python evaluates this file as `(<this function>)(config)` where config is
// {binding, token, dispatch, filters, ask, window, frameCost, partChars}:
//   binding   the name of the CDP binding (Runtime.addBinding) that carries
//             page -> Python batches; captured here and deleted from the global;
//   token     a secret that proves a batch comes from this shim (page -> Python)
//             and that a call comes from Python (Python -> page);
//   dispatch  the name of the non-writable global Python calls with batches;
//   filters   [[source, flags], ...] regular expressions: a socket whose URL
//             matches none of them stays native, unless
//   ask       is true: then Python decides for every socket (predicate routes);
//   window    the flow-control window, in bytes, of each routed socket, and
//   frameCost what each frame costs in it on top of its size (below);
//   partChars the largest page -> Python batch, in characters, worth building: a
//             batch that reaches it goes at once, and a larger frame goes in parts.
//
// Page -> Python batch: '[token,' + messages + ']', each message an array:
//   ["c", id, url, protocols]     new WebSocket(url, protocols) to route
//   ["t", id, text]               ws.send(text)
//   ["b", id, base64]             ws.send(binary)
//   ["m", id, "t"|"b", text|b64]  a leading part of a large frame (the rest follows)
//   ["x", id, code|null, reason]  ws.close(code, reason) while OPEN
//   ["k", id, code|null, reason]  ws.close() while CONNECTING
//   ["l", id]                     the socket was lost (page entered the bfcache)
// Python -> page batch (dispatch(token, batch)):
//   ["o", id, protocol, extensions]   open
//   ["t", id, text] / ["b", id, b64]  a message for the page
//   ["m", id, "t"|"b", text|b64]      a leading part of a large message (the rest follows)
//   ["e", id]                         error event (readyState is CLOSED)
//   ["c", id, code, reason, wasClean] close event (readyState is CLOSED)
//   ["p", id]                         not routed after all: become a native socket
//   ["a", id, n]                      Python has taken in the socket's next n frames
//   ["r", filters, ask]               new route filters
// A batch whose events could not all run in the call returns a promise that resolves
// once they have: Python keeps few bytes in flight to a page that is slow to read.
//
// Size: Chromium's cost per character of a binding call grows with its size, and a
// call is converted by the renderer and then by the browser, one after the other: calls
// of partChars or less cost less per byte and overlap in the two processes.
//
// Flow control (page -> Python): each frame costs its size plus frameCost; a socket
// sends while less than `window` is unacknowledged, then holds its frames (they stay
// in bufferedAmount, as on a congested network) until Python acknowledges some ("a").
//
// Order: frames of one socket leave in the order the page sent them, whatever
// their type (a Blob waits for its bytes, and holds back what follows it); each
// Python -> page event is dispatched in a task of its own, in arrival order (the
// first in the call from Python itself when no earlier event waits).
//
// Privacy: every built-in used after start-up is captured now, so page scripts
// that redefine JSON, Array.prototype, EventTarget, Function.prototype.call,
// Blob or ArrayBuffer methods cannot see or steer the tunnel.
(function installWebSocketShim(config) {
  "use strict";
  const global = globalThis;

  // A second install in the same document (runImmediately racing a new-document
  // script, or a route update) only refreshes the filters.
  const installed = Object.getOwnPropertyDescriptor(global, config.dispatch);
  if (installed !== undefined) {
    installed.value(config.token, [["r", config.filters, config.ask]]);
    return;
  }
  const NativeWebSocket = global.WebSocket;
  if (typeof NativeWebSocket !== "function") return;
  // Chromium sometimes applies the binding after this script (a popup that keeps the
  // window of its initial about:blank): then it is taken at the first flush that finds it,
  // and what the page sends waits until then. Python re-adds it if it never comes.
  let binding = null;
  function takeBinding() {
    const candidate = global[config.binding];
    if (typeof candidate !== "function") return false;
    binding = candidate;
    delete global[config.binding];
    return true;
  }
  takeBinding();

  // ---- captured built-ins ----------------------------------------------------
  const ReflectApply = Reflect.apply;
  const ReflectConstruct = Reflect.construct;
  const uncurry = (fn) => ReflectApply(Function.prototype.bind, Function.prototype.call, [fn]);
  const getter = (proto, name) => uncurry(Object.getOwnPropertyDescriptor(proto, name).get);
  const defineProperty = Object.defineProperty;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ObjectFreeze = Object.freeze;
  const setPrototypeOf = Object.setPrototypeOf;
  // Internal arrays have no prototype: a page that defines index setters on
  // Array.prototype must not see what we store.
  const list = () => setPrototypeOf([], null);
  const JSONStringify = JSON.stringify;
  const StringCtor = String;
  const NumberCtor = Number;
  const MapCtor = Map;
  const mapGet = uncurry(Map.prototype.get);
  const mapSet = uncurry(Map.prototype.set);
  const mapDelete = uncurry(Map.prototype.delete);
  const mapHas = uncurry(Map.prototype.has);
  const mapValues = uncurry(Map.prototype.values);
  const iteratorNext = uncurry(Object.getPrototypeOf(new Map().values()).next);
  const WeakMapCtor = WeakMap;
  const weakGet = uncurry(WeakMap.prototype.get);
  const weakSet = uncurry(WeakMap.prototype.set);
  const RegExpCtor = RegExp;
  const regexpExec = uncurry(RegExp.prototype.exec);
  const EventTargetCtor = EventTarget;
  const addEventListener = uncurry(EventTarget.prototype.addEventListener);
  const removeEventListener = uncurry(EventTarget.prototype.removeEventListener);
  const dispatchEvent = uncurry(EventTarget.prototype.dispatchEvent);
  const EventCtor = Event;
  const MessageEventCtor = MessageEvent;
  const CloseEventCtor = CloseEvent;
  const DOMExceptionCtor = DOMException;
  const SyntaxErrorCtor = SyntaxError;
  const TypeErrorCtor = TypeError;
  const URLCtor = URL;
  const urlHref = getter(URL.prototype, "href");
  const urlProtocol = getter(URL.prototype, "protocol");
  const urlHash = getter(URL.prototype, "hash");
  const urlOrigin = getter(URL.prototype, "origin");
  const setUrlProtocol = uncurry(getOwnPropertyDescriptor(URL.prototype, "protocol").set);
  // `window.document` is [LegacyUnforgeable] (an own, unconfigurable accessor), and it changes
  // when a navigation from the initial about:blank keeps the window: read it at each use.
  const documentDescriptor = getOwnPropertyDescriptor(global, "document");
  const currentDocument = documentDescriptor ? uncurry(documentDescriptor.get) : null;
  const baseURI = currentDocument !== null ? getter(Node.prototype, "baseURI") : null;
  // Location members are [LegacyUnforgeable]: own properties of the instance, never patchable.
  const locationHref = global.location ? uncurry(getOwnPropertyDescriptor(global.location, "href").get) : null;
  const stringToWellFormed = uncurry(String.prototype.toWellFormed);
  const stringCharCodeAt = uncurry(String.prototype.charCodeAt);
  const fromCharCode = String.fromCharCode;
  const BlobCtor = Blob;
  const blobSize = getter(Blob.prototype, "size");
  const blobArrayBuffer = uncurry(Blob.prototype.arrayBuffer);
  const promiseThen = uncurry(Promise.prototype.then);
  const Uint8ArrayCtor = Uint8Array;
  const ArrayBufferCtor = ArrayBuffer;
  const isView = ArrayBuffer.isView;
  const arrayBufferByteLength = getter(ArrayBuffer.prototype, "byteLength");
  const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype);
  const typedBuffer = getter(TypedArrayProto, "buffer");
  const typedOffset = getter(TypedArrayProto, "byteOffset");
  const typedLength = getter(TypedArrayProto, "byteLength");
  const dataViewBuffer = getter(DataView.prototype, "buffer");
  const dataViewOffset = getter(DataView.prototype, "byteOffset");
  const dataViewLength = getter(DataView.prototype, "byteLength");
  const uint8Buffer = getter(TypedArrayProto, "buffer");
  const toBase64 = Uint8Array.prototype.toBase64 ? uncurry(Uint8Array.prototype.toBase64) : null;
  const fromBase64 = Uint8Array.fromBase64 || null;
  const atobFn = global.atob;
  const btoaFn = global.btoa;
  const textEncoder = new TextEncoder();
  const encode = uncurry(TextEncoder.prototype.encode);
  const MessageChannelCtor = MessageChannel;
  const postMessage = uncurry(MessagePort.prototype.postMessage);
  const consoleError = global.console ? global.console.error : null;
  const typedLengthOf = getter(TypedArrayProto, "length");
  const typedSet = uncurry(TypedArrayProto.set);
  const FileReaderCtor = FileReader;
  const readAsArrayBuffer = uncurry(FileReader.prototype.readAsArrayBuffer);
  const readerResult = getter(FileReader.prototype, "result");
  const numberToString = uncurry(Number.prototype.toString);
  const stringToUpperCase = uncurry(String.prototype.toUpperCase);
  const stringSlice = uncurry(String.prototype.slice);
  const MathTrunc = Math.trunc;
  const PromiseCtor = Promise;
  const isNaNFn = Number.isNaN;
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
  const FunctionToString = Function.prototype.toString;
  const nativeSources = new WeakMapCtor(); // our functions -> the source text native ones show
  const ASCII = /^[\x00-\x7f]*$/;

  const CONNECTING = 0;
  const OPEN = 1;
  const CLOSING = 2;
  const CLOSED = 3;

  // ---- state -------------------------------------------------------------------
  const states = new WeakMapCtor(); // WebSocket object -> state
  const byId = new MapCtor(); // id -> state
  let nextId = 1;
  let filters = [];
  let ask = false;
  let pending = ""; // serialized page -> Python messages, comma-prefixed
  let flushScheduled = false;
  const dirty = list(); // states with bytes counted in bufferedAmount but not yet flushed
  let dirtyCount = 0;
  const WINDOW = config.window;
  const FRAME_COST = config.frameCost; // what a frame costs on top of its size
  const PART_CHARS = config.partChars; // a multiple of 4: base64 parts decode alone

  function setFilters(sources, askFlag) {
    const compiled = list();
    let needsAsk = !!askFlag;
    for (let i = 0; i < sources.length; i++) {
      try {
        compiled[i] = new RegExpCtor(sources[i][0], sources[i][1]);
      } catch (e) {
        needsAsk = true; // cannot pre-filter this one: let Python decide
      }
    }
    filters = compiled;
    ask = needsAsk;
  }
  setFilters(config.filters, config.ask);

  function mightRoute(url) {
    if (ask) return true;
    for (let i = 0; i < filters.length; i++) {
      if (filters[i] !== undefined && regexpExec(filters[i], url) !== null) return true;
    }
    return false;
  }

  // ---- page -> Python -------------------------------------------------------------
  function post(message) {
    pending += "," + message;
    if (pending.length >= PART_CHARS) {
      flush(); // big enough: waiting for more would only make the call cost more per byte
    } else if (!flushScheduled) {
      flushScheduled = true;
      queueMicrotaskFn(flush);
    }
  }
  const queueMicrotaskFn = global.queueMicrotask;

  function flush() {
    flushScheduled = false;
    if (pending === "") return;
    if (binding === null && !takeBinding()) return; // kept until the binding arrives
    const payload = "[" + JSONStringify(config.token) + pending + "]";
    pending = "";
    // What was handed to the binding counts as transmitted.
    for (let i = 0; i < dirtyCount; i++) {
      const state = dirty[i];
      dirty[i] = undefined;
      state.bufferedAmount -= state.unflushed;
      state.unflushed = 0;
    }
    dirtyCount = 0;
    binding(payload);
  }

  // Every state of a Map, without the (patchable) iterator protocol.
  function statesOf(map) {
    const out = new MapCtor();
    const it = mapValues(map);
    for (let step = iteratorNext(it); !step.done; step = iteratorNext(it)) mapSet(out, out.size, step.value);
    return out;
  }

  function utf8Length(text) {
    return regexpExec(ASCII, text) !== null ? text.length : typedLengthOf(encode(textEncoder, text));
  }

  function bytesToBase64(bytes) {
    if (toBase64 !== null) return toBase64(bytes);
    let binary = "";
    const length = typedLengthOf(bytes);
    for (let i = 0; i < length; i += 0x8000) {
      binary += ReflectApply(fromCharCode, null, bytes.subarray(i, i + 0x8000));
    }
    return btoaFn(binary);
  }

  function base64ToBytes(text) {
    if (fromBase64 !== null) return fromBase64(text);
    const binary = atobFn(text);
    const bytes = new Uint8ArrayCtor(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = stringCharCodeAt(binary, i);
    return bytes;
  }

  // The bytes of an ArrayBuffer or view (of any realm), or null if `data` is neither.
  function bytesOf(data) {
    try {
      return new Uint8ArrayCtor(data, 0, arrayBufferByteLength(data));
    } catch (e) {}
    if (isView(data)) {
      try {
        return new Uint8ArrayCtor(typedBuffer(data), typedOffset(data), typedLength(data));
      } catch (e) {}
      try {
        return new Uint8ArrayCtor(dataViewBuffer(data), dataViewOffset(data), dataViewLength(data));
      } catch (e) {}
    }
    return null;
  }

  function isBlob(data) {
    try {
      blobSize(data);
      return true;
    } catch (e) {
      return false;
    }
  }

  // Hand a data frame to the next batch: it leaves bufferedAmount at the flush, and uses
  // window credit until Python acknowledges it.
  function postFrame(state, message, size) {
    if (state.unflushed === 0) dirty[dirtyCount++] = state;
    state.unflushed += size;
    const cost = size + FRAME_COST;
    state.inflight += cost;
    state.costs[state.costs.length] = cost;
    post(message);
  }

  // Hand a frame to the batches: a large one as parts of partChars (one call each), then
  // its last part as the frame itself, which alone uses window credit.
  function postData(state, kind, payload, size) {
    let start = 0;
    while (payload.length - start > PART_CHARS) {
      let end = start + PART_CHARS;
      // Never split a surrogate pair: each part is well-formed text on its own.
      if (kind === "t" && isHighSurrogate(stringCharCodeAt(payload, end - 1))) end--;
      const part = stringSlice(payload, start, end);
      post('["m",' + state.id + (kind === "b" ? ',"b","' + part + '"]' : ',"t",' + JSONStringify(part) + "]"));
      start = end;
    }
    postFrame(state, frameMessage(state, kind, start === 0 ? payload : stringSlice(payload, start)), size);
  }

  function isHighSurrogate(code) {
    return code >= 0xd800 && code <= 0xdbff;
  }

  // A frame on the wire: ["t", id, text] or ["b", id, base64] (base64 needs no escaping).
  function frameMessage(state, kind, payload) {
    if (kind === "b") return '["b",' + state.id + ',"' + payload + '"]';
    return '["t",' + state.id + "," + JSONStringify(payload) + "]";
  }

  function hold(state, kind, payload, size) {
    const entry = list();
    entry[0] = kind;
    entry[1] = payload;
    entry[2] = size;
    state.held[state.held.length] = entry;
  }

  // Queue one outgoing frame, keeping the socket's order across Blob reads and held frames.
  function enqueueFrame(state, kind, payload, size) {
    if (state.blobsPending === 0 && state.heldIndex === state.held.length && state.inflight < WINDOW) {
      postData(state, kind, payload, size);
    } else {
      hold(state, kind, payload, size);
    }
  }

  function releaseHeld(state) {
    while (state.blobsPending === 0 && state.heldIndex < state.held.length) {
      const entry = state.held[state.heldIndex];
      if (entry[0] === "raw") {
        post(entry[1]);
      } else if (state.inflight >= WINDOW) {
        break; // the window is full: the next acknowledgement releases more
      } else if (entry[0] === "blob") {
        readBlob(state, entry[1], entry[2]);
      } else {
        postData(state, entry[0], entry[1], entry[2]);
      }
      state.held[state.heldIndex++] = undefined;
    }
    if (state.heldIndex === state.held.length) {
      state.held = list();
      state.heldIndex = 0;
    }
  }

  // Python took in the socket's next n frames: their cost leaves the window.
  function acknowledge(state, n) {
    const costs = state.costs;
    let head = state.costsHead;
    while (n-- > 0 && head < costs.length) state.inflight -= costs[head++];
    if (head === costs.length) {
      state.costs = list();
      state.costsHead = 0;
    } else if (head > 1024 && head * 2 > costs.length) {
      const rest = list();
      for (let i = head; i < costs.length; i++) rest[i - head] = costs[i];
      state.costs = rest;
      state.costsHead = 0;
    } else {
      state.costsHead = head;
    }
    releaseHeld(state);
  }

  // FileReader, not blob.arrayBuffer(): resolving a promise with the bytes would look up
  // `then` on them, which a page can intercept through Object.prototype.
  function readBlob(state, blob, size) {
    state.blobsPending++;
    const reader = new FileReaderCtor();
    addEventListener(reader, "loadend", () => {
      state.blobsPending--;
      const buffer = readerResult(reader);
      // Chromium fails the connection when it cannot read a Blob; we send it empty.
      const base64 = buffer === null ? "" : bytesToBase64(new Uint8ArrayCtor(buffer));
      postData(state, "b", base64, size);
      releaseHeld(state);
    });
    readAsArrayBuffer(reader, blob);
  }

  // ---- Python -> page ---------------------------------------------------------------
  const tasks = new MapCtor();
  let taskHead = 0;
  let taskTail = 0;
  const channel = new MessageChannelCtor();
  channel.port1.onmessage = runTask;

  function queueTask(fn) {
    mapSet(tasks, taskTail++, fn);
    postMessage(channel.port2, null);
  }

  function runTask() {
    if (taskHead === taskTail) return;
    const fn = mapGet(tasks, taskHead);
    mapDelete(tasks, taskHead++);
    fn();
  }

  function fire(target, event) {
    dispatchEvent(target, event);
  }

  // Each event for the page runs in a task of its own, as Chromium dispatches them. A call
  // from Python is a task itself: its first event runs in it when no earlier one waits.
  let callSlot = false;
  function schedule(fn) {
    if (callSlot && taskHead === taskTail) {
      callSlot = false;
      fn();
    } else {
      callSlot = false;
      queueTask(fn);
    }
  }

  function deliver(state, data) {
    schedule(() => {
      if (state.readyState !== OPEN) return;
      fire(state.ws, new MessageEventCtor("message", { __proto__: null, data: data(), origin: state.origin }));
    });
  }

  // A large message came in parts ("m"): join them with its last part.
  function joinText(state, last) {
    let text = "";
    for (let i = 0; i < state.parts.length; i++) text += state.parts[i];
    state.parts = null;
    return text + last;
  }

  function joinBinary(state, lastBase64) {
    const parts = state.parts;
    state.parts = null;
    const last = base64ToBytes(lastBase64);
    let length = typedLengthOf(last);
    for (let i = 0; i < parts.length; i++) length += typedLengthOf(parts[i]);
    const bytes = new Uint8ArrayCtor(length);
    let offset = 0;
    for (let i = 0; i < parts.length; i++) {
      typedSet(bytes, parts[i], offset);
      offset += typedLengthOf(parts[i]);
    }
    typedSet(bytes, last, offset);
    return () => (state.binaryType === "blob" ? new BlobCtor([bytes]) : uint8Buffer(bytes));
  }

  function binaryData(state, base64) {
    return () => {
      const bytes = base64ToBytes(base64);
      return state.binaryType === "blob" ? new BlobCtor([bytes]) : uint8Buffer(bytes);
    };
  }

  // Returns a promise that resolves once the batch's messages are dispatched, or, for a
  // batch without any, whether the shim holds its binding (Python re-adds it when not).
  function dispatchFromPython(token, batch) {
    if (token !== config.token) return undefined;
    const queuedBefore = taskTail;
    callSlot = true;
    for (let i = 0; i < batch.length; i++) {
      const message = batch[i];
      const op = message[0];
      if (op === "r") {
        setFilters(message[1], message[2]);
        flush();
        continue;
      }
      const state = mapGet(byId, message[1]);
      if (state === undefined) continue;
      if (op === "t") {
        const text = state.parts === null ? message[2] : joinText(state, message[2]);
        deliver(state, () => text);
      } else if (op === "b") {
        deliver(state, state.parts === null ? binaryData(state, message[2]) : joinBinary(state, message[2]));
      } else if (op === "m") {
        if (state.parts === null) state.parts = list();
        state.parts[state.parts.length] = message[2] === "b" ? base64ToBytes(message[3]) : message[3];
      } else if (op === "a") {
        acknowledge(state, message[2]);
      } else if (op === "o") {
        // This call runs as a task of its own, like Chromium's DidConnect: open at once.
        if (state.readyState !== CONNECTING) continue;
        callSlot = false;
        state.readyState = OPEN;
        state.protocol = message[2];
        state.extensions = message[3];
        fire(state.ws, new EventCtor("open"));
      } else if (op === "e") {
        schedule(() => {
          if (state.readyState === CLOSED && state.errored) return;
          state.readyState = CLOSED;
          state.errored = true;
          fire(state.ws, new EventCtor("error"));
        });
      } else if (op === "c") {
        const code = message[2];
        const reason = message[3];
        const wasClean = message[4];
        schedule(() => closeNow(state, code, reason, wasClean));
      } else if (op === "p") {
        goNative(state);
      }
    }
    callSlot = false;
    if (taskTail === queuedBefore) return binding !== null; // everything ran in this call
    let resolve = null;
    const delivered = new PromiseCtor((r) => {
      resolve = r;
    });
    // Awaiting it must not consult the page's Promise.prototype.constructor (species).
    defineProperty(delivered, "constructor", { __proto__: null, value: undefined });
    queueTask(resolve);
    return delivered;
  }

  function closeNow(state, code, reason, wasClean) {
    if (state.closed) return;
    state.closed = true;
    state.readyState = CLOSED;
    mapDelete(byId, state.id);
    fire(state.ws, new CloseEventCtor("close", { __proto__: null, code, reason, wasClean }));
  }

  defineProperty(global, config.dispatch, {
    value: ReflectApply(Function.prototype.bind, dispatchFromPython, [null]),
    writable: false,
    enumerable: false,
    configurable: false,
  });

  // ---- native pass-through (Python declined the socket) ---------------------------------
  function goNative(state) {
    mapDelete(byId, state.id);
    if (state.closeRequested !== null) {
      // Closed before Python answered: what Chromium shows for a close() while connecting.
      queueTask(() => {
        state.readyState = CLOSED;
        fire(state.ws, new EventCtor("error"));
        closeNow(state, 1006, "", false);
      });
      return;
    }
    if (state.readyState !== CONNECTING) return;
    let inner;
    try {
      const protocols = [];
      for (let i = 0; i < state.protocols.length; i++) defineProperty(protocols, i, { value: state.protocols[i], writable: true, enumerable: true, configurable: true });
      inner = ReflectConstruct(NativeWebSocket, protocols.length ? [state.url, protocols] : [state.url]);
    } catch (e) {
      queueTask(() => {
        state.readyState = CLOSED;
        fire(state.ws, new EventCtor("error"));
        closeNow(state, 1006, "", false);
      });
      return;
    }
    state.inner = inner;
    inner.binaryType = "arraybuffer";
    addEventListener(inner, "open", () => {
      state.readyState = OPEN;
      state.protocol = inner.protocol;
      state.extensions = inner.extensions;
      fire(state.ws, new EventCtor("open"));
    });
    addEventListener(inner, "message", (event) => {
      let data = event.data;
      if (typeof data !== "string" && state.binaryType === "blob") data = new BlobCtor([data]);
      fire(state.ws, new MessageEventCtor("message", { __proto__: null, data, origin: event.origin }));
    });
    addEventListener(inner, "error", () => {
      state.readyState = inner.readyState;
      fire(state.ws, new EventCtor("error"));
    });
    addEventListener(inner, "close", (event) => {
      state.closed = true;
      state.readyState = CLOSED;
      fire(state.ws, new CloseEventCtor("close", { __proto__: null, code: event.code, reason: event.reason, wasClean: event.wasClean }));
    });
  }

  // ---- the constructor --------------------------------------------------------------------
  function syntaxError(message) {
    return new DOMExceptionCtor("Failed to construct 'WebSocket': " + message, "SyntaxError");
  }

  function documentBase() {
    if (baseURI !== null) return baseURI(currentDocument(global));
    if (locationHref !== null) return locationHref(global.location);
    return undefined;
  }

  // URL and protocol checks of the WebSocket constructor, in Chromium's order and words.
  function normalize(urlArg, protocolsArg) {
    const text = StringCtor(urlArg);
    let parsed;
    try {
      parsed = new URLCtor(text, documentBase());
    } catch (e) {
      throw syntaxError("The URL '" + text + "' is invalid.");
    }
    const scheme = urlProtocol(parsed);
    if (scheme === "http:") setUrlProtocol(parsed, "ws:");
    else if (scheme === "https:") setUrlProtocol(parsed, "wss:");
    else if (scheme !== "ws:" && scheme !== "wss:") {
      throw syntaxError(
        "The URL's scheme must be either 'http', 'https', 'ws', or 'wss'. '" + scheme.slice(0, -1) + "' is not allowed.",
      );
    }
    if (urlHash(parsed) !== "" || (text.length > 0 && stringCharCodeAt(text, text.length - 1) === 0x23)) {
      throw syntaxError(
        "The URL contains a fragment identifier ('" + urlHash(parsed).slice(1) + "'). Fragment identifiers are not allowed in WebSocket URLs.",
      );
    }
    let protocols = list();
    if (protocolsArg !== undefined) {
      if (typeof protocolsArg === "string") protocols[0] = protocolsArg;
      else if (protocolsArg !== null && typeof protocolsArg === "object" && typeof protocolsArg[Symbol.iterator] === "function") {
        for (const p of protocolsArg) protocols[protocols.length] = StringCtor(p);
      } else protocols[0] = StringCtor(protocolsArg);
    }
    const seen = new MapCtor();
    for (let i = 0; i < protocols.length; i++) {
      const p = protocols[i];
      if (!isToken(p)) throw syntaxError("The subprotocol '" + escapeForMessage(p) + "' is invalid.");
      if (mapHas(seen, p)) throw syntaxError("The subprotocol '" + escapeForMessage(p) + "' is duplicated.");
      mapSet(seen, p, true);
    }
    return { __proto__: null, url: urlHref(parsed), origin: urlOrigin(parsed), protocols };
  }

  function isToken(text) {
    return regexpExec(TOKEN, text) !== null;
  }

  // Chromium's messages show non-ASCII as \uXXXX escapes.
  function escapeForMessage(text) {
    if (regexpExec(PRINTABLE_ASCII, text) !== null) return text;
    let out = "";
    for (let i = 0; i < text.length; i++) {
      const c = stringCharCodeAt(text, i);
      if (c >= 0x20 && c <= 0x7e) out += fromCharCode(c);
      else out += "\\u" + stringToUpperCase(stringSlice("000" + numberToString(c, 16), -4));
    }
    return out;
  }

  const handler = {
    __proto__: null,
    construct(target, args, newTarget) {
      if (args.length === 0) {
        throw new TypeErrorCtor("Failed to construct 'WebSocket': 1 argument required, but only 0 present.");
      }
      let normalized;
      try {
        normalized = normalize(args[0], args[1]);
      } catch (e) {
        throw e;
      }
      if (!mightRoute(normalized.url)) return ReflectConstruct(NativeWebSocket, args, newTarget);
      const ws = ReflectConstruct(EventTargetCtor, [], newTarget);
      const state = {
        __proto__: null,
        id: nextId++,
        ws,
        url: normalized.url,
        origin: normalized.origin,
        protocols: normalized.protocols,
        readyState: CONNECTING,
        protocol: "",
        extensions: "",
        binaryType: "blob",
        bufferedAmount: 0,
        unflushed: 0,
        attributeHandlers: { __proto__: null },
        blobsPending: 0,
        held: list(),
        heldIndex: 0,
        parts: null, // the leading parts of a large message from Python, until its last
        inflight: 0, // window credit in use (bytes + FRAME_COST per frame)
        costs: list(), // the cost of each unacknowledged frame, oldest at costsHead
        costsHead: 0,
        inner: null,
        closeRequested: null,
        closed: false,
        errored: false,
      };
      weakSet(states, ws, state);
      mapSet(byId, state.id, state);
      post("[\"c\"," + state.id + "," + JSONStringify(state.url) + "," + protocolsJSON(state.protocols) + "]");
      return ws;
    },
  };

  function protocolsJSON(list) {
    let out = "[";
    for (let i = 0; i < list.length; i++) out += (i ? "," : "") + JSONStringify(list[i]);
    return out + "]";
  }

  // ---- WebSocket.prototype: routed objects use our state, native ones the original --------
  const proto = NativeWebSocket.prototype;

  function disguise(fn, original) {
    mapSetWeak(fn, ReflectApply(FunctionToString, original, []));
    return fn;
  }
  function mapSetWeak(fn, source) {
    weakSet(nativeSources, fn, source);
  }

  function patchGetter(name, read, write) {
    const original = getOwnPropertyDescriptor(proto, name);
    const nativeGet = uncurry(original.get);
    const nativeSet = original.set ? uncurry(original.set) : null;
    // Accessors defined the literal way get Chromium's names: "get url", "set binaryType".
    const accessors = {
      get [name]() {
        const state = weakGet(states, this);
        if (state === undefined) return nativeGet(this);
        return read(state);
      },
      set [name](value) {
        const state = weakGet(states, this);
        if (state === undefined) return nativeSet(this, value);
        write(state, value);
      },
    };
    const defined = getOwnPropertyDescriptor(accessors, name);
    const descriptor = {
      get: disguise(defined.get, original.get),
      enumerable: original.enumerable,
      configurable: original.configurable,
    };
    if (nativeSet !== null) descriptor.set = disguise(defined.set, original.set);
    defineProperty(proto, name, descriptor);
  }

  function patchMethod(name, impl) {
    const original = getOwnPropertyDescriptor(proto, name);
    const nativeFn = original.value;
    const fn = {
      [name](...args) {
        const state = weakGet(states, this);
        if (state === undefined) return ReflectApply(nativeFn, this, args);
        return impl(state, args);
      },
    }[name];
    defineProperty(fn, "length", { value: nativeFn.length, configurable: true });
    defineProperty(proto, name, {
      value: disguise(fn, nativeFn),
      writable: original.writable,
      enumerable: original.enumerable,
      configurable: original.configurable,
    });
  }

  patchGetter("url", (s) => s.url);
  patchGetter("readyState", (s) => (s.inner !== null && !s.closed ? s.inner.readyState : s.readyState));
  patchGetter("bufferedAmount", (s) => (s.inner !== null ? s.inner.bufferedAmount : s.bufferedAmount));
  patchGetter("extensions", (s) => s.extensions);
  patchGetter("protocol", (s) => s.protocol);
  patchGetter(
    "binaryType",
    (s) => s.binaryType,
    (s, value) => {
      const text = StringCtor(value);
      if (text === "blob" || text === "arraybuffer") s.binaryType = text;
    },
  );
  for (const type of ["open", "message", "error", "close"]) {
    const name = "on" + type;
    patchGetter(
      name,
      (s) => {
        const slot = s.attributeHandlers[type];
        return slot === undefined ? null : slot.handler;
      },
      (s, value) => {
        const callable = typeof value === "function" || (value !== null && typeof value === "object") ? value : null;
        let slot = s.attributeHandlers[type];
        if (callable === null) {
          if (slot !== undefined) {
            removeEventListener(s.ws, type, slot.listener);
            s.attributeHandlers[type] = undefined;
          }
          return;
        }
        if (slot === undefined) {
          slot = { __proto__: null, handler: callable, listener: null };
          slot.listener = function (event) {
            const h = slot.handler;
            if (typeof h === "function") return ReflectApply(h, this, [event]);
          };
          s.attributeHandlers[type] = slot;
          addEventListener(s.ws, type, slot.listener);
        } else {
          slot.handler = callable;
        }
      },
    );
  }

  patchMethod("send", (state, args) => {
    if (args.length === 0) {
      throw new TypeErrorCtor("Failed to execute 'send' on 'WebSocket': 1 argument required, but only 0 present.");
    }
    if (state.inner !== null) return state.inner.send(args[0]);
    if (state.readyState === CONNECTING) {
      throw new DOMExceptionCtor("Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.", "InvalidStateError");
    }
    const data = args[0];
    let size;
    let kind;
    let payload = null;
    if (typeof data === "string") {
      payload = stringToWellFormed(data);
      size = utf8Length(payload);
      kind = "t";
    } else if (isBlob(data)) {
      size = blobSize(data);
      kind = "blob";
    } else {
      const bytes = bytesOf(data);
      if (bytes !== null) {
        size = typedLengthOf(bytes);
        kind = "b";
        payload = bytesToBase64(bytes);
      } else {
        payload = stringToWellFormed(StringCtor(data));
        size = utf8Length(payload);
        kind = "t";
      }
    }
    if (state.readyState !== OPEN) {
      // Chromium counts data sent after close() and drops it.
      state.bufferedAmount += size;
      if (consoleError) consoleError("WebSocket is already in CLOSING or CLOSED state.");
      return;
    }
    state.bufferedAmount += size;
    if (kind === "blob") {
      if (state.blobsPending === 0 && state.heldIndex === state.held.length && state.inflight < WINDOW) {
        readBlob(state, data, size);
      } else {
        hold(state, "blob", data, size);
      }
    } else {
      enqueueFrame(state, kind, payload, size);
    }
  });

  patchMethod("close", (state, args) => {
    let code = null;
    let reason = "";
    // Chromium converts the code as a [Clamp] unsigned short (NaN is 0, out of range
    // clamps, fractions truncate), and reads it whenever a reason is given (undefined: 0).
    if ((args.length > 0 && args[0] !== undefined) || (args.length > 1 && args[1] !== undefined)) {
      const n = NumberCtor(args[0]);
      code = isNaNFn(n) ? 0 : n <= 0 ? 0 : n >= 65535 ? 65535 : MathTrunc(n);
      if (code !== 1000 && (code < 3000 || code > 4999)) {
        throw new DOMExceptionCtor(
          "Failed to execute 'close' on 'WebSocket': The close code must be either 1000, or between 3000 and 4999. " + code + " is neither.",
          "InvalidAccessError",
        );
      }
    }
    if (args.length > 1 && args[1] !== undefined) {
      reason = stringToWellFormed(StringCtor(args[1]));
      if (utf8Length(reason) > 123) {
        throw new DOMExceptionCtor(
          "Failed to execute 'close' on 'WebSocket': The close reason must not be greater than 123 UTF-8 bytes.",
          "SyntaxError",
        );
      }
    }
    if (state.inner !== null) return code === null ? state.inner.close() : state.inner.close(code, reason);
    if (state.readyState === CLOSING || state.readyState === CLOSED) return;
    const wasConnecting = state.readyState === CONNECTING;
    state.readyState = CLOSING;
    state.closeRequested = code === null ? [] : [code, reason];
    if (mapHas(byId, state.id)) {
      const message = "[" + (wasConnecting ? '"k"' : '"x"') + "," + state.id + "," + (code === null ? "null" : code) + "," + JSONStringify(reason) + "]";
      if (state.blobsPending === 0 && state.heldIndex === state.held.length) post(message);
      else hold(state, "raw", message, 0); // frames sent before close() wait for a Blob or credit: so does the close
    }
  });

  const ShimWebSocket = new Proxy(NativeWebSocket, handler);
  mapSetWeak(ShimWebSocket, ReflectApply(FunctionToString, NativeWebSocket, []));
  const constructorDescriptor = getOwnPropertyDescriptor(proto, "constructor");
  defineProperty(proto, "constructor", {
    value: ShimWebSocket,
    writable: constructorDescriptor.writable,
    enumerable: constructorDescriptor.enumerable,
    configurable: constructorDescriptor.configurable,
  });
  defineProperty(global, "WebSocket", {
    value: ShimWebSocket,
    writable: true,
    enumerable: false,
    configurable: true,
  });
  // Function.prototype.toString shows our replacements as the native code they stand for.
  const toStringProxy = new Proxy(FunctionToString, {
    __proto__: null,
    apply(target, thisArg, args) {
      const source = weakGet(nativeSources, thisArg);
      return source !== undefined ? source : ReflectApply(target, thisArg, args);
    },
  });
  mapSetWeak(toStringProxy, ReflectApply(FunctionToString, FunctionToString, []));
  defineProperty(Function.prototype, "toString", {
    value: toStringProxy,
    writable: true,
    enumerable: false,
    configurable: true,
  });

  // ---- back/forward cache: Chromium drops a page's sockets when it is frozen ----------------
  // Python learns at once (the route closes, the upstream gets 1001); the page sees error and
  // close 1006 when it is shown again, as with a native socket.
  if (currentDocument !== null) {
    const lost = list();
    addEventListener(global, "pagehide", (event) => {
      if (!event.persisted) return;
      const open = statesOf(byId);
      for (let i = 0; i < open.size; i++) {
        const state = mapGet(open, i);
        if (state.inner !== null || state.closed) continue;
        mapDelete(byId, state.id);
        post('["l",' + state.id + "]");
        lost[lost.length] = state;
      }
      flush();
    });
    addEventListener(global, "pageshow", (event) => {
      if (!event.persisted) return;
      for (let i = 0; i < lost.length; i++) {
        const state = lost[i];
        lost[i] = undefined;
        queueTask(() => {
          state.readyState = CLOSED;
          fire(state.ws, new EventCtor("error"));
          closeNow(state, 1006, "", false);
        });
      }
      lost.length = 0;
    });
  }
  ObjectFreeze(handler);
});
