// A minimal event emitter shared by signaling.js and call.js.

/** A minimal event emitter: `extends EventTarget` throws on Safari before 14,
 *  which older wall tablets still run. */
export class Emitter {
  constructor() {
    this.handlers = {};
  }

  on(type, fn) {
    (this.handlers[type] = this.handlers[type] || []).push(fn);
  }

  emit(type, detail) {
    for (const fn of this.handlers[type] || []) fn(detail);
  }
}
