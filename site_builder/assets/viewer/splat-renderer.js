// splat-renderer.js: the WebGL2 side: splat texture, SH palette, instance order, one instanced draw composited back to
// front on black.

import { FRAGMENT_SHADER, VERTEX_SHADER } from './shaders.js';

/** Context options: no alpha (the background is black), no antialiasing (the trainer has none). */
export const CONTEXT_OPTIONS = { alpha: false, antialias: false, depth: false, stencil: false, premultipliedAlpha: true, preserveDrawingBuffer: false };

export class SplatRenderer {
  constructor(gl) {
    this.gl = gl;
    this.init();
  }

  /** Create every GL object; run again after a lost context is restored (the data is re-uploaded). */
  init() {
    const gl = this.gl;
    this.program = linkProgram(gl, VERTEX_SHADER, FRAGMENT_SHADER);
    this.uniforms = {};
    for (const name of ['u_splats', 'u_splatsPerRow', 'u_rotation', 'u_translation', 'u_focal', 'u_principal', 'u_viewport',
      'u_limits', 'u_sh', 'u_shCoeffs', 'u_shPerRow', 'u_eye', 'u_blur']) {
      this.uniforms[name] = gl.getUniformLocation(this.program, name);
    }
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    const corners = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, corners);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const cornerLocation = gl.getAttribLocation(this.program, 'a_corner');
    gl.enableVertexAttribArray(cornerLocation);
    gl.vertexAttribPointer(cornerLocation, 2, gl.FLOAT, false, 0, 0);
    this.orderBuffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.orderBuffer);
    const indexLocation = gl.getAttribLocation(this.program, 'a_index');
    gl.enableVertexAttribArray(indexLocation);
    gl.vertexAttribIPointer(indexLocation, 1, gl.UNSIGNED_INT, 0, 0);
    gl.vertexAttribDivisor(indexLocation, 1);
    gl.bindVertexArray(null);
    this.texture = null;
    this.textureRows = 0;
    this.uploaded = 0;
    this.drawCount = 0;
    this.palette = null;
    this.paletteTexture = floatTexture(gl, 1, 1, new Float32Array(3)); // bound while there is no palette
  }

  /** The SH palette (see sh-palette.js), or null for base colour only; uploaded whole. */
  setPalette(palette) {
    const gl = this.gl;
    gl.deleteTexture(this.paletteTexture);
    this.palette = palette;
    this.paletteTexture = palette
      ? floatTexture(gl, palette.perRow * palette.coeffs, palette.rows, palette.texels)
      : floatTexture(gl, 1, 1, new Float32Array(3));
  }

  /** Upload the rows of `store` that arrived or changed since the last call (the texture grows with the store). */
  sync(store) {
    const gl = this.gl;
    if (!this.texture || this.textureRows !== store.rows || this.textureWidth !== store.textureWidth) {
      if (this.texture) gl.deleteTexture(this.texture);
      this.texture = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, this.texture);
      gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA32UI, store.textureWidth, store.rows);
      for (const parameter of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, parameter, gl.NEAREST);
      for (const parameter of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T]) gl.texParameteri(gl.TEXTURE_2D, parameter, gl.CLAMP_TO_EDGE);
      this.textureRows = store.rows;
      this.textureWidth = store.textureWidth;
      this.uploaded = 0;
    }
    const from = Math.min(this.uploaded, store.changedFrom);
    store.changedFrom = Infinity;
    if (store.count === from) return;
    const first = Math.floor(from / store.splatsPerRow);
    const end = Math.ceil(store.count / store.splatsPerRow);
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 4);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, first, store.textureWidth, end - first, gl.RGBA_INTEGER, gl.UNSIGNED_INT,
      store.words, first * store.textureWidth * 4);
    this.uploaded = store.count;
  }

  /** The instance order: splat indices, farthest first. */
  setOrder(order, count) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.orderBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, order.subarray(0, count), gl.DYNAMIC_DRAW);
    this.drawCount = count;
  }

  /**
   * Draw with `camera` = { rows, translation } (world to camera) and `k` = { fx, fy, cx, cy } for width x height;
   * `eye` is the camera's centre, `blur` = { trainer, least }: the trainer's blur in its pixels^2, the least on this screen (shaders.js).
   */
  draw(camera, k, width, height, splatsPerRow, eye, blur) {
    const gl = this.gl;
    gl.viewport(0, 0, width, height);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!this.texture || this.drawCount === 0) return;
    gl.useProgram(this.program);
    const [r0, r1, r2] = camera.rows;
    const u = this.uniforms;
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.uniform1i(u.u_splats, 0);
    gl.uniform1i(u.u_splatsPerRow, splatsPerRow);
    gl.uniformMatrix3fv(u.u_rotation, false, [r0[0], r1[0], r2[0], r0[1], r1[1], r2[1], r0[2], r1[2], r2[2]]);
    gl.uniform3fv(u.u_translation, camera.translation);
    gl.uniform2f(u.u_focal, k.fx, k.fy);
    gl.uniform2f(u.u_principal, k.cx, k.cy);
    gl.uniform2f(u.u_viewport, width, height);
    gl.uniform3fv(u.u_eye, eye);
    gl.uniform2f(u.u_blur, blur.trainer, blur.least);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.paletteTexture);
    gl.uniform1i(u.u_sh, 1);
    gl.uniform1i(u.u_shCoeffs, this.palette ? this.palette.coeffs : 0);
    gl.uniform1i(u.u_shPerRow, this.palette ? this.palette.perRow : 1);
    const marginX = 0.3 * (0.5 * width / k.fx), marginY = 0.3 * (0.5 * height / k.fy);
    gl.uniform4f(u.u_limits, -(k.cx / k.fx + marginX), (width - k.cx) / k.fx + marginX,
      -(k.cy / k.fy + marginY), (height - k.cy) / k.fy + marginY);
    gl.disable(gl.DEPTH_TEST);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.bindVertexArray(this.vao);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, this.drawCount);
    gl.bindVertexArray(null);
  }
}

/** An RGB32F texture read with texelFetch (no filtering: float-linear is an extension). */
function floatTexture(gl, width, height, texels) {
  const texture = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, texture);
  gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGB32F, width, height);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 4);
  gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, width, height, gl.RGB, gl.FLOAT, texels);
  for (const parameter of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, parameter, gl.NEAREST);
  for (const parameter of [gl.TEXTURE_WRAP_S, gl.TEXTURE_WRAP_T]) gl.texParameteri(gl.TEXTURE_2D, parameter, gl.CLAMP_TO_EDGE);
  return texture;
}

function linkProgram(gl, vertexSource, fragmentSource) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vertexSource], [gl.FRAGMENT_SHADER, fragmentSource]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS) && !gl.isContextLost()) {
    const logs = gl.getAttachedShaders(program).map((s) => gl.getShaderInfoLog(s)).join('\n');
    throw new Error(`the splat shaders did not compile: ${gl.getProgramInfoLog(program)}\n${logs}`);
  }
  return program;
}
