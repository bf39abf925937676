// A small typed event emitter. A handler that throws does not stop the others, nor
// the client: its error is reported (reportError in browsers, console.error elsewhere).

type Handler<T> = (value: T) => void;

export function reportHandlerError(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === 'function') report(error);
  else console.error('herald-client: an event handler threw', error);
}

export class Emitter<Events extends object> {
  private handlers: { [K in keyof Events]?: Set<Handler<Events[K]>> } = {};

  /** Adds a handler; returns a function that removes it. */
  on<K extends keyof Events>(event: K, handler: Handler<Events[K]>): () => void {
    (this.handlers[event] ??= new Set()).add(handler);
    return () => this.off(event, handler);
  }

  off<K extends keyof Events>(event: K, handler: Handler<Events[K]>): void {
    this.handlers[event]?.delete(handler);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.handlers[event];
    if (!set) return;
    // A copy, so handlers may remove themselves (or add others) while being called.
    for (const handler of [...set]) {
      try {
        handler(value);
      } catch (error) {
        reportHandlerError(error);
      }
    }
  }

  protected removeAllHandlers(): void {
    this.handlers = {};
  }
}
