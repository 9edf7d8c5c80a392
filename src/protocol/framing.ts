// Splits a byte stream into lines. A state machine that pushes into an injected sink, so tests can
// feed raw bytes in any split. A line longer than the limit is reported once and then skipped up to
// its newline; the stream stays usable.

export interface LineSink {
  line(text: string): void;
  /** A line exceeded the limit; its bytes up to the next newline are discarded. */
  overflow(): void;
}

const NL = 0x0a;

export class LineSplitter {
  readonly #max: number;
  readonly #sink: LineSink;
  #parts: Buffer[] = [];
  #length = 0;
  #skipping = false;

  constructor(maxLineBytes: number, sink: LineSink) {
    this.#max = maxLineBytes;
    this.#sink = sink;
  }

  /** Bytes held while waiting for the end of a line. */
  get buffered(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      const end = nl === -1 ? chunk.length : nl;
      if (this.#skipping) {
        if (nl === -1) return;
        this.#skipping = false;
        start = nl + 1;
        continue;
      }
      const piece = end - start;
      if (this.#length + piece > this.#max) {
        this.#parts = [];
        this.#length = 0;
        this.#sink.overflow();
        if (nl === -1) {
          this.#skipping = true;
          return;
        }
        start = nl + 1;
        continue;
      }
      if (nl === -1) {
        this.#parts.push(chunk.subarray(start));
        this.#length += piece;
        return;
      }
      let text: string;
      if (this.#parts.length === 0) {
        text = chunk.toString('latin1', start, end);
      } else {
        this.#parts.push(chunk.subarray(start, end));
        text = Buffer.concat(this.#parts, this.#length + piece).toString('latin1');
        this.#parts = [];
        this.#length = 0;
      }
      this.#sink.line(text.endsWith('\r') ? text.slice(0, -1) : text);
      start = nl + 1;
    }
  }
}
