// Helpers the session tests share: everything a sans-I/O session has queued.

/** Every message the session wants sent, in order. */
export const drain = (s) => {
  const out = [];
  for (let m = s.pollTransmit(); m; m = s.pollTransmit()) out.push(m);
  return out;
};

/** Every event the session has for the application, in order. */
export const events = (s) => {
  const out = [];
  for (let e = s.pollEvent(); e; e = s.pollEvent()) out.push(e);
  return out;
};
