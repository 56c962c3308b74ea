/*
 * MD5 as lower-case hex of the UTF-8 bytes of a string: the digest the PBX's password login
 * sends (PUT /rest/system/session, {"name":"auth","value":"<ext> <md5 of password>"}).
 * WebCrypto has no MD5. Shared by the softphone (app.js) and the sample client (sample.js).
 */
'use strict';

window.md5Hex = (() => {
  const MD5_K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
  const MD5_S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

  /** Lower-case hex MD5 of the UTF-8 bytes of `text`. */
  function md5Hex(text) {
    const bytes = new TextEncoder().encode(text);
    const n = bytes.length;
    const blocks = ((n + 8) >>> 6) + 1;
    const w = new Uint32Array(blocks * 16);
    for (let i = 0; i < n; i++) w[i >> 2] |= bytes[i] << ((i % 4) * 8);
    w[n >> 2] |= 0x80 << ((n % 4) * 8);
    w[blocks * 16 - 2] = (n * 8) >>> 0;
    w[blocks * 16 - 1] = Math.floor(n / 0x20000000);
    let h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476;
    for (let off = 0; off < w.length; off += 16) {
      let a = h0, b = h1, c = h2, d = h3;
      for (let i = 0; i < 64; i++) {
        let f, g;
        if (i < 16) { f = (b & c) | (~b & d); g = i; }
        else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
        else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
        else { f = c ^ (b | ~d); g = (7 * i) % 16; }
        const s = MD5_S[(i >> 4) * 4 + (i % 4)];
        const x = (a + f + MD5_K[i] + w[off + g]) | 0;
        a = d; d = c; c = b;
        b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    }
    let hex = '';
    for (const h of [h0, h1, h2, h3]) {
      for (let i = 0; i < 4; i++) hex += ((h >>> (i * 8)) & 0xff).toString(16).padStart(2, '0');
    }
    return hex;
  }

  return md5Hex;
})();
