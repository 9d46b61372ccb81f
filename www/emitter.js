// A minimal event emitter shared by signaling.js, call.js and link.js.

/** A minimal event emitter: `extends EventTarget` throws on Safari before 14,
 *  which older wall tablets still run. */
export class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
  }

  emit(type, detail) {
    for (const fn of this.handlers.get(type) || []) fn(detail);
  }
}
