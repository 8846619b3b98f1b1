// Shows a sandwich JPEG as its reconstruction, in the page.
//
//   import { drawSandwich } from "./sandwich-decoder.mjs";
//   const shown = await drawSandwich(canvas, "photo.png.jpg", { models: "model/" });
//   // shown.kind: "model", "identity", "plain-jpeg" or "jpegli" (the file needs no model) or
//   // "plain" (not decodable here: drawn as the JPEG it is, with a console warning)
//
// A sandwich file is a plain JPEG whose comment (COM) segment holds a JSON
// header (docs/formats.md, "Bottleneck file"). The browser decodes the JPEG
// (createImageBitmap); this module reads the header with the rules of
// codec/bottleneck_format.py (every field type- and range-checked, the
// claimed size checked against the JPEG's before a pixel is decoded), runs
// the post-processor of the model the header names on onnxruntime-web (a web
// export, `python -m codec.web_export`: WebGPU where the browser has it,
// else WASM) and draws the reconstruction at the source's size. The graph
// upsamples a factor-2 bottleneck itself, given the source size.
//
// Large images are run in tiles with a halo laid out as codec/tiling.py lays
// them out (1024 source pixels, 128 of halo), which gives the untiled result
// and the Python decoder's tiles.
//
// Nothing throws out of `drawSandwich`: a file with no header, a malformed
// one, an unknown model or a runtime that fails is drawn as the plain JPEG
// (console.warn says why); only a file the browser cannot decode at all is
// left undrawn (kind "failed").

export const FORMAT_VERSION = 2;
export const MARKER = "sandwich";
export const FALLBACK = "plain-jpeg";
export const JPEGLI_FALLBACK = "jpegli";
// The fallbacks: plain JPEGs (Pillow's, jpegli's), drawn as they are.
export const FALLBACKS = [FALLBACK, JPEGLI_FALLBACK];
export const IDENTITY = "identity";
export const MAX_JPEG_SIDE = 65500;
export const MAX_FACTOR = 16;
export const MAX_TEXT = 256;
export const MAX_PSNR = 999.99;
export const DEFAULT_MAX_PIXELS = 100_000_000;
export const JPEG_MODES = ["ycbcr-420", "ycbcr-444", "planes", "gray"];
export const DEFAULT_JPEG_MODE = "ycbcr-420";
export const SCENARIOS = ["high_bit_depth", "high_res", "gray"];
export const WEB_MODEL_FILE = "web_model.json";
export const WEB_FORMAT_VERSION = 1;
// codec/exported.py: DEFAULT_TILE, DEFAULT_HALO and the 32-pixel layout grid.
export const DEFAULT_TILE = 1024;
export const DEFAULT_HALO = 128;
const LAYOUT_GRID = 32;
// Deeper than this, a header is refused (Python's json gives up near 1000).
const MAX_DEPTH = 500;

/** A file that is not a sandwich file this page can decode; `message` says why. */
export class HeaderError extends Error {
  constructor(message) {
    super(message);
    this.name = "HeaderError";
  }
}

// ---------------------------------------------------------------- JSON ----

/** A JSON number written with a fraction or an exponent: Python reads it as
 * a float, which no integer field takes (`20.0` is not a height). */
class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

/** Strict JSON (RFC 8259, as Python's `json` reads it: also NaN and
 * Infinity) that keeps integers and floats apart. */
function parseJson(text) {
  let at = 0;
  const fail = (what) => {
    throw new HeaderError(`${what} at character ${at}`);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const literal = (word, value) => {
    if (text.startsWith(word, at)) {
      at += word.length;
      return value;
    }
    return fail("invalid JSON");
  };
  const string = () => {
    at++; // the opening quote
    let out = "";
    for (;;) {
      if (at >= text.length) fail("unterminated string");
      const c = text[at++];
      if (c === '"') return out;
      if (c < " ") fail("control character in a string");
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = text[at++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e in simple) out += simple[e];
      else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(at, at + 4))) {
        out += String.fromCharCode(parseInt(text.slice(at, at + 4), 16));
        at += 4;
      } else fail("invalid escape");
    }
  };
  const number = () => {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/.exec(text.slice(at));
    if (!match) return fail("invalid JSON");
    at += match[0].length;
    const value = Number(match[0]);
    return match[2] || match[3] ? new JsonFloat(value) : value;
  };
  const value = (depth) => {
    if (depth > MAX_DEPTH) fail("JSON nested too deeply");
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const object = Object.create(null);
      space();
      if (text[at] === "}") {
        at++;
        return object;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        space();
        if (text[at++] !== ":") fail("expected ':'");
        object[key] = value(depth + 1);
        space();
        const next = text[at++];
        if (next === "}") return object;
        if (next !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const array = [];
      space();
      if (text[at] === "]") {
        at++;
        return array;
      }
      for (;;) {
        array.push(value(depth + 1));
        space();
        const next = text[at++];
        if (next === "]") return array;
        if (next !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true", true);
    if (c === "f") return literal("false", false);
    if (c === "n") return literal("null", null);
    if (c === "N") return literal("NaN", new JsonFloat(NaN));
    if (c === "I") return literal("Infinity", new JsonFloat(Infinity));
    if (c === "-" && text.startsWith("-Infinity", at)) return literal("-Infinity", new JsonFloat(-Infinity));
    return number();
  };
  const result = value(0);
  space();
  if (at !== text.length) fail("extra data after JSON");
  return result;
}

/** The comment's bytes as text, as Python's `json.loads(bytes)` decodes
 * them (UTF-8, a BOM skipped; UTF-16 by its BOM or zero bytes). Where
 * Python would be lenient (UTF-32, encoded surrogates) this refuses. */
function commentText(bytes) {
  const b = bytes;
  let encoding = "utf-8";
  if ((b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0xfe && b[1] === 0xff)) {
    if (b[0] === 0xff && b[2] === 0 && b[3] === 0) encoding = "utf-32";
    else encoding = b[0] === 0xff ? "utf-16le" : "utf-16be";
  } else if (b.length >= 4 && b[0] === 0) encoding = b[1] ? "utf-16be" : "utf-32";
  else if (b.length >= 4 && b[1] === 0) encoding = b[2] || b[3] ? "utf-16le" : "utf-32";
  else if (b.length === 2 && b[0] === 0) encoding = "utf-16be";
  else if (b.length === 2 && b[1] === 0) encoding = "utf-16le";
  if (encoding === "utf-32") throw new HeaderError("a UTF-32 comment");
  return new TextDecoder(encoding, { fatal: true }).decode(b);
}

// ------------------------------------------------------------- header ----

function shown(value) {
  let text;
  if (value instanceof JsonFloat) text = String(value.value);
  else if (typeof value === "string") text = `'${value}'`;
  else if (value === true || value === false) text = value ? "True" : "False";
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  // Unprintable characters escaped, as Python's repr escapes them (a lone
  // surrogate would not survive being logged or handed to a test driver).
  text = text.replace(UNPRINTABLE_ALL, (c) => (c === " " ? c : `\\u${c.codePointAt(0).toString(16).padStart(4, "0")}`));
  return text.length <= 40 ? text : `${text.slice(0, 37)}...`;
}

function integer(low, high) {
  return (name, value) => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < low || value > high) {
      throw new HeaderError(`bottleneck header ${name}=${shown(value)} is not an integer in ${low}..${high}`);
    }
    return value;
  };
}

function number(low, high) {
  return (name, value) => {
    const v = value instanceof JsonFloat ? value.value : value;
    if (typeof v !== "number" || !(low < v && v <= high)) {
      throw new HeaderError(`bottleneck header ${name}=${shown(value)} is not a number in (${low}, ${high}]`);
    }
    return v;
  };
}

// Python's str.isprintable: no "Other" or "Separator" character but the space.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, "gu");

function text(shortest = 1) {
  return (name, value) => {
    const length = typeof value === "string" ? [...value].length : -1;
    if (
      typeof value !== "string" ||
      length < shortest ||
      length > MAX_TEXT ||
      UNPRINTABLE.test(value.replaceAll(" ", "x"))
    ) {
      throw new HeaderError(
        `bottleneck header ${name}=${shown(value)} is not a printable string of ${shortest}..${MAX_TEXT} characters`,
      );
    }
    return value;
  };
}

function oneOf(choices) {
  return (name, value) => {
    if (!choices.includes(value)) {
      throw new HeaderError(`bottleneck header ${name}=${shown(value)} is not one of ${JSON.stringify(choices)}`);
    }
    return value;
  };
}

// codec/bottleneck_format.py `_VALIDATORS`, field for field.
const VALIDATORS = {
  model_id: text(),
  scenario: text(),
  bit_depth: integer(8, 16),
  factor: integer(1, MAX_FACTOR),
  height: integer(1, MAX_JPEG_SIDE * MAX_FACTOR),
  width: integer(1, MAX_JPEG_SIDE * MAX_FACTOR),
  qstep: number(0, 255),
  source_bit_depth: integer(8, 16),
  jpeg_mode: oneOf(JPEG_MODES),
  source_stamp: text(0),
  target: text(0),
  psnr: number(-1, MAX_PSNR),
};
const DEFAULTS = { source_stamp: "", target: "", psnr: 0.0 };

/** The header in a JPEG comment's bytes (`Header.from_comment`): an object
 * of the fields above, defaults filled in; a `HeaderError` otherwise. */
export function parseHeader(comment) {
  let data;
  try {
    data = parseJson(commentText(comment ?? new Uint8Array()));
  } catch {
    data = null;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data) || data instanceof JsonFloat || !(MARKER in data)) {
    throw new HeaderError("not a sandwich bottleneck: no sandwich header in the JPEG comment");
  }
  if (data[MARKER] !== FORMAT_VERSION) {
    throw new HeaderError(`bottleneck format ${shown(data[MARKER])} is not ${FORMAT_VERSION}`);
  }
  const missing = Object.keys(VALIDATORS).filter((name) => !(name in DEFAULTS) && !(name in data));
  if (missing.length) {
    throw new HeaderError(`bottleneck header lacks [${missing.map((n) => `'${n}'`).join(", ")}]`);
  }
  const header = { ...DEFAULTS };
  for (const [name, check] of Object.entries(VALIDATORS)) {
    if (name in data) header[name] = check(name, data[name]);
  }
  return header;
}

/** What the JPEG's markers up to its first scan say (`_open`): the last
 * comment, the frame's size, components and sample precision. */
export function readJpeg(bytes) {
  if (bytes.length < 2 || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
    throw new HeaderError(bytes.length ? "not a JPEG file" : "empty file");
  }
  let at = 2;
  let comment = null;
  let frame = null;
  const corrupt = (why) => new HeaderError(`corrupt JPEG header: ${why}`);
  for (;;) {
    if (at >= bytes.length) throw corrupt("no start of scan");
    if (bytes[at] !== 0xff) {
      at++; // junk between segments, as Pillow skips it
      continue;
    }
    const marker = bytes[at + 1];
    if (marker === undefined) throw corrupt("no start of scan");
    if (marker === 0xff || marker === 0x00) {
      at++;
      continue;
    }
    at += 2;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) continue; // no length
    if (marker === 0xd9) throw corrupt("end of image before a scan");
    if (at + 2 > bytes.length) throw corrupt("truncated segment");
    const length = (bytes[at] << 8) | bytes[at + 1];
    if (length < 2 || at + length > bytes.length) throw corrupt("truncated segment");
    const body = bytes.subarray(at + 2, at + length);
    at += length;
    if (marker === 0xfe) comment = body;
    else if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      if (body.length < 6) throw corrupt("short frame header");
      frame = {
        precision: body[0],
        height: (body[1] << 8) | body[2],
        width: (body[3] << 8) | body[4],
        components: body[5],
      };
      if (frame.precision !== 8) throw corrupt(`cannot handle ${frame.precision}-bit layers`);
    } else if (marker === 0xda) {
      if (!frame) throw corrupt("a scan before the frame header");
      return { comment, ...frame };
    }
  }
}

/** The header of a sandwich file's bytes (`bottleneck_format.read_header`). */
export function readHeader(bytes) {
  return parseHeader(readJpeg(bytes).comment);
}

/** The (h', w') of the bottleneck of a header's source. */
export function bottleneckSize(header) {
  return [Math.ceil(header.height / header.factor), Math.ceil(header.width / header.factor)];
}

/** `Header.check_size`: the claimed source is covered exactly by the JPEG
 * at the header's factor, and within `maxPixels`. */
export function checkSize(header, jpegSize, maxPixels = DEFAULT_MAX_PIXELS) {
  if (header.height * header.width > maxPixels) {
    throw new HeaderError(
      `decompression bomb: header claims ${header.width}x${header.height} = ${header.height * header.width} pixels, above the limit of ${maxPixels}`,
    );
  }
  const [h, w] = bottleneckSize(header);
  if (h !== jpegSize[0] || w !== jpegSize[1]) {
    throw new HeaderError(
      `header claims a ${header.width}x${header.height} source at factor ${header.factor}, which a ${jpegSize[1]}x${jpegSize[0]} bottleneck does not cover exactly`,
    );
  }
}

/** `Header.check_model`: the model, or the identity's scenario, or the
 * fallback that the header names, with every field its decoder relies on;
 * `models` are web models by id. Returns the web model (null for the
 * identity and the fallbacks). */
export function checkModel(header, models) {
  let expected = null;
  if (FALLBACKS.includes(header.model_id)) {
    expected = { scenario: header.model_id, bit_depth: 8, factor: 1, jpeg_mode: DEFAULT_JPEG_MODE };
  } else if (header.model_id === IDENTITY) {
    const { scenario, bit_depth: depth, factor } = header;
    const why = !SCENARIOS.includes(scenario)
      ? `unknown scenario '${scenario}'`
      : scenario === "high_bit_depth" && depth <= 8
        ? "high_bit_depth needs a source bit depth above 8"
        : scenario === "high_bit_depth" && factor !== 1
          ? `high_bit_depth works at full resolution (factor 1), got ${factor}`
          : scenario === "gray" && depth !== 8
            ? `gray carries 8-bit colour sources, got bit_depth ${depth}`
            : (scenario === "gray") !== (header.jpeg_mode === "gray")
              ? "the gray scenario, and only it, codes one channel (JPEG mode gray)"
              : "";
    if (why) throw new HeaderError(`an identity header names no scenario: ${why}`);
    expected = header;
  } else if (models.has(header.model_id)) {
    expected = models.get(header.model_id);
  } else {
    throw new HeaderError(
      `made by model '${header.model_id}', not by a model of the set [${[...models.keys()].map((m) => `'${m}'`).join(", ")}]: no post-processor here can decode it`,
    );
  }
  for (const name of ["scenario", "bit_depth", "factor", "jpeg_mode"]) {
    if (header[name] !== expected[name]) {
      throw new HeaderError(`header ${name} ${shown(header[name])} differs from the model's ${shown(expected[name])}`);
    }
  }
  if (header.source_bit_depth < header.bit_depth) {
    throw new HeaderError(`header source_bit_depth ${header.source_bit_depth} is below the model's ${header.bit_depth}`);
  }
  return models.get(header.model_id) ?? null;
}

/** Everything `bottleneck_format.decode` checks before decoding a pixel:
 * the header, its size against the JPEG's and `maxPixels`, its mode's
 * components (one for gray, three otherwise), a whole file. Returns the
 * header. */
export function checkFile(bytes, maxPixels = DEFAULT_MAX_PIXELS) {
  const jpeg = readJpeg(bytes);
  const header = parseHeader(jpeg.comment);
  checkSize(header, [jpeg.height, jpeg.width], maxPixels);
  if (bytes[bytes.length - 2] !== 0xff || bytes[bytes.length - 1] !== 0xd9) {
    throw new HeaderError("truncated JPEG: no end-of-image marker");
  }
  const components = !FALLBACKS.includes(header.model_id) && header.jpeg_mode === "gray" ? 1 : 3;
  if (jpeg.components !== components) {
    throw new HeaderError(`a ${header.jpeg_mode} bottleneck is ${jpeg.height}x${jpeg.width} x ${components} components, this JPEG has ${jpeg.components}`);
  }
  return header;
}

// ------------------------------------------------------------ runtime ----

const runtimes = new Map(); // runtime URL + bundle -> ort module
const webModels = new Map(); // web export URL -> Promise of its web_model.json
const sessions = new Map(); // graph URL + providers -> Promise of a session

function directoryUrl(url) {
  const text = String(url);
  return new URL(text.endsWith("/") ? text : `${text}/`, globalThis.document?.baseURI ?? globalThis.location?.href).href;
}

let webgpuAdapter = null;

/** WebGPU first where the browser has an adapter for it (headless and
 * blocklisted GPUs have `navigator.gpu` but none), else WASM alone, so a
 * page without WebGPU never downloads the larger WebGPU runtime. */
async function defaultProviders() {
  webgpuAdapter ??= (async () => {
    try {
      return Boolean(await globalThis.navigator?.gpu?.requestAdapter());
    } catch {
      return false;
    }
  })();
  return (await webgpuAdapter) ? ["webgpu", "wasm"] : ["wasm"];
}

/** onnxruntime-web from `runtime` (the URL of its `dist/`): the WASM-only
 * bundle, or the WebGPU one when WebGPU is asked for. */
async function loadRuntime(runtime, webgpu, numThreads) {
  const key = `${runtime}|${webgpu}`;
  if (!runtimes.has(key)) {
    runtimes.set(
      key,
      import(new URL(webgpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs", runtime).href).then((ort) => {
        ort.env.wasm.wasmPaths = runtime;
        if (numThreads) ort.env.wasm.numThreads = numThreads;
        return ort;
      }),
    );
  }
  return runtimes.get(key);
}

/** The `web_model.json` of a web export, with its URL. */
export async function loadWebModel(url) {
  const base = directoryUrl(url);
  if (!webModels.has(base)) {
    webModels.set(
      base,
      fetch(new URL(WEB_MODEL_FILE, base)).then(async (response) => {
        if (!response.ok) throw new Error(`${base}${WEB_MODEL_FILE}: HTTP ${response.status}`);
        const model = await response.json();
        if (model?.kind !== "web_model" || model.format_version !== WEB_FORMAT_VERSION) {
          throw new Error(`${base}${WEB_MODEL_FILE} is not a web model of format ${WEB_FORMAT_VERSION}`);
        }
        return { ...model, url: base };
      }),
    );
  }
  return webModels.get(base);
}

async function session(graphUrl, options) {
  const providers = options.executionProviders ?? (await defaultProviders());
  const key = `${graphUrl}|${providers}`;
  if (!sessions.has(key)) {
    const create = async () => {
      const webgpu = providers.includes("webgpu");
      const ort = await loadRuntime(options.runtime, webgpu, options.numThreads);
      try {
        return { ort, session: await ort.InferenceSession.create(graphUrl, { executionProviders: providers }) };
      } catch (error) {
        if (!webgpu) throw error;
        console.warn(`sandwich: WebGPU failed (${error.message}); running on WASM`);
        const wasm = await loadRuntime(options.runtime, false, options.numThreads);
        return { ort: wasm, session: await wasm.InferenceSession.create(graphUrl, { executionProviders: ["wasm"] }) };
      }
    };
    const pending = create();
    pending.catch(() => sessions.delete(key)); // a failed start may be retried
    sessions.set(key, pending);
  }
  return sessions.get(key);
}

// -------------------------------------------------------------- tiles ----

/** `codec.exported.tile_layout` for one factor. */
function tileLayout(factor, tile, halo) {
  const gcd = (a, b) => (b ? gcd(b, a % b) : a);
  const grid = (LAYOUT_GRID * factor) / gcd(LAYOUT_GRID, factor);
  return [
    tile ?? Math.max(grid, Math.floor(DEFAULT_TILE / grid) * grid),
    halo ?? Math.ceil(DEFAULT_HALO / grid) * grid,
  ];
}

/** `codec.tiling.spans`: cores of `tile` covering [0, length), each with
 * up to `halo` of context either side. */
function spans(length, tile, halo) {
  const out = [];
  for (let start = 0; start < length; start += tile) {
    const stop = Math.min(start + tile, length);
    out.push({ start, stop, contextStart: Math.max(0, start - halo), contextStop: Math.min(length, stop + halo) });
  }
  return out;
}

/** `codec.tiling.upscale_tiled`: `run(rgb, h', w', height, width)` on each
 * tile of the bottleneck `rgb` (uint8 [h', w', 3]) with its context,
 * stitched into [height, width, 3] of the output's typed array. */
async function upscaleTiled(run, rgb, [rows, cols], [height, width], factor, [tile, halo]) {
  let out = null;
  const fine = (start, stop, limit) => [start * factor, Math.min(stop * factor, limit)];
  for (const r of spans(rows, tile / factor, halo / factor)) {
    for (const c of spans(cols, tile / factor, halo / factor)) {
      const th = r.contextStop - r.contextStart;
      const tw = c.contextStop - c.contextStart;
      const piece = new Uint8Array(th * tw * 3);
      for (let y = 0; y < th; y++) {
        const from = ((r.contextStart + y) * cols + c.contextStart) * 3;
        piece.set(rgb.subarray(from, from + tw * 3), y * tw * 3);
      }
      const [y0, y1] = fine(r.contextStart, r.contextStop, height);
      const [x0, x1] = fine(c.contextStart, c.contextStop, width);
      const result = await run(piece, th, tw, y1 - y0, x1 - x0);
      out ??= new result.constructor(height * width * 3);
      const [top, bottom] = fine(r.start, r.stop, height);
      const [left, right] = fine(c.start, c.stop, width);
      const rw = x1 - x0;
      for (let y = top; y < bottom; y++) {
        const from = ((y - y0) * rw + (left - x0)) * 3;
        out.set(result.subarray(from, from + (right - left) * 3), (y * width + left) * 3);
      }
    }
  }
  return out;
}

// ------------------------------------------------------------- pixels ----

async function decodeJpeg(bytes) {
  return createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
}

/** The decoded JPEG's pixels as RGB uint8 [h, w, 3]. */
function rgbOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const rgb = new Uint8Array(bitmap.width * bitmap.height * 3);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

/** Draws RGB [height, width, 3] (uint8, or uint16 of `bitDepth` bits, shown
 * by its top 8 bits as the report shows deeper images) onto `canvas`. */
function drawRgb(canvas, rgb, height, width, bitDepth) {
  const shift = bitDepth - 8;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    rgba[i] = rgb[j] >> shift;
    rgba[i + 1] = rgb[j + 1] >> shift;
    rgba[i + 2] = rgb[j + 2] >> shift;
    rgba[i + 3] = 255;
  }
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
}

/** Draws the JPEG as it is, or scaled to `size` by the browser. */
function drawPlain(canvas, bitmap, size) {
  const [height, width] = size ?? [bitmap.height, bitmap.width];
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
}

/** Runs a graph (the post-processor, or the identity without `qstep`) on
 * the decoded bottleneck, tile by tile; the reconstruction's typed array. */
async function reconstruct(graphUrl, rgb, header, options) {
  const { ort, session: graph } = await session(graphUrl, options);
  const qstep = graph.inputNames.includes("qstep")
    ? { qstep: new ort.Tensor("float32", Float32Array.of(header.qstep), []) }
    : {};
  const run = async (piece, h, w, height, width) => {
    const feeds = {
      decoded: new ort.Tensor("uint8", piece, [h, w, 3]),
      size: new ort.Tensor("int32", Int32Array.of(height, width), [2]),
      ...qstep,
    };
    const result = await graph.run(feeds);
    const output = result[graph.outputNames[0]];
    const data = output.data;
    if (output.dims.join() !== [height, width, 3].join()) {
      throw new Error(`the graph gave ${output.dims} for ${height}x${width}`);
    }
    return data;
  };
  const layout = tileLayout(header.factor, options.tile, options.halo);
  return upscaleTiled(run, rgb, bottleneckSize(header), [header.height, header.width], header.factor, layout);
}

// ---------------------------------------------------------------- API ----

/**
 * Fetches the sandwich file at `fileUrl` and draws its reconstruction on
 * `canvas` (resized to the source's size). Never throws.
 *
 * options:
 *   models: the URL of a web export (a directory with web_model.json), or
 *     an array of them (a model set); the header's model_id picks one
 *   runtime: the URL of onnxruntime-web's dist/ (default: ort/ beside this
 *     module)
 *   executionProviders: default ["webgpu", "wasm"] where the browser has
 *     WebGPU, else ["wasm"]
 *   numThreads: WASM threads (default: onnxruntime-web's; more than one
 *     needs a cross-origin isolated page, see docs/web.md)
 *   maxPixels: the largest source a header may claim (default 100 M)
 *   tile, halo: source pixels (default as codec/exported.py)
 *
 * Resolves to { kind, reason, header, width, height, timings }: kind
 * "model", "identity", "plain-jpeg" or "jpegli" for a decoded sandwich file, "plain"
 * for a file drawn as the JPEG it is (reason says why), "failed" where
 * not even that could be drawn; timings in milliseconds (fetch, jpeg,
 * network, draw, total).
 */
export async function drawSandwich(canvas, fileUrl, options = {}) {
  const start = performance.now();
  const timings = {};
  const lap = (name, since) => {
    const now = performance.now();
    timings[name] = now - since;
    return now;
  };
  const settings = {
    ...options,
    runtime: directoryUrl(options.runtime ?? new URL("./ort/", import.meta.url)),
  };
  let bitmap = null;
  let header = null;
  let t = start;
  try {
    const response = await fetch(fileUrl);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    t = lap("fetch", t);
    let reason = "";
    let model = null;
    try {
      header = checkFile(bytes, settings.maxPixels ?? DEFAULT_MAX_PIXELS);
      const urls = [settings.models ?? []].flat();
      const loaded = await Promise.all(urls.map((url) => loadWebModel(url)));
      model = checkModel(header, new Map(loaded.map((m) => [m.model_id, m])));
    } catch (error) {
      reason = error.message;
    }
    bitmap = await decodeJpeg(bytes);
    t = lap("jpeg", t);
    const result = (kind, why = "") => {
      timings.total = performance.now() - start;
      if (why) console.warn(`sandwich: ${fileUrl} drawn as a plain JPEG: ${why}`);
      return { kind, reason: why, header, width: canvas.width, height: canvas.height, timings };
    };
    if (reason) {
      drawPlain(canvas, bitmap);
      return result("plain", reason);
    }
    const size = [header.height, header.width];
    if (FALLBACKS.includes(header.model_id) || (header.model_id === IDENTITY && header.factor === 1 && header.bit_depth === 8)) {
      drawPlain(canvas, bitmap); // the decoded JPEG is the reconstruction
      lap("draw", t);
      return result(header.model_id);
    }
    let graph = null;
    if (header.model_id === IDENTITY) {
      const urls = [settings.models ?? []].flat();
      const loaded = await Promise.all(urls.map((url) => loadWebModel(url)));
      const same = loaded.find((m) => ["scenario", "bit_depth", "factor"].every((k) => m[k] === header[k]));
      if (!same) {
        drawPlain(canvas, bitmap, size);
        return result("plain", `no web model of the identity's scenario (${header.scenario} x${header.factor}, ${header.bit_depth} bits): upsampled by the browser`);
      }
      graph = new URL(same.identity, same.url).href;
    } else {
      graph = new URL(model.postprocessor, model.url).href;
    }
    try {
      const rgb = rgbOf(bitmap);
      const pixels = await reconstruct(graph, rgb, header, settings);
      t = lap("network", t);
      drawRgb(canvas, pixels, header.height, header.width, header.bit_depth);
      lap("draw", t);
    } catch (error) {
      drawPlain(canvas, bitmap);
      return result("plain", `the post-processor failed: ${error.message}`);
    }
    return result(header.model_id === IDENTITY ? IDENTITY : "model");
  } catch (error) {
    timings.total = performance.now() - start;
    if (bitmap) drawPlain(canvas, bitmap);
    console.warn(`sandwich: ${fileUrl} ${bitmap ? "drawn as a plain JPEG" : "not drawn"}: ${error.message}`);
    return { kind: bitmap ? "plain" : "failed", reason: error.message, header, width: canvas.width, height: canvas.height, timings };
  } finally {
    bitmap?.close();
  }
}
