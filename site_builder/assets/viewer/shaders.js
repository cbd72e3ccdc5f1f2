// shaders.js: GLSL for one instanced quad per splat, with the trainer's (gsplat's classic) projection, view-dependent
// colour and compositing rules.

export const VERTEX_SHADER = `#version 300 es
precision highp float;
precision highp int;
precision highp usampler2D;
precision highp sampler2D;

uniform usampler2D u_splats;   // 3 texels per splat, see splat-data.js
uniform sampler2D u_sh;        // the palette of SH bands 1-3: u_shCoeffs texels (rgb) an entry, see sh-palette.js
uniform int u_shCoeffs;        // 0 (base colour only), 3, 8 or 15
uniform int u_shPerRow;        // palette entries per texture row
uniform vec3 u_eye;            // the camera's centre in the scene's frame
uniform vec2 u_blur;           // the trainer's blur in its pixels^2, and the least blur in this screen's pixels^2
uniform int u_splatsPerRow;
uniform mat3 u_rotation;       // world to camera (OpenCV axes: x right, y down, z forward)
uniform vec3 u_translation;
uniform vec2 u_focal;          // fx, fy in drawing-buffer pixels
uniform vec2 u_principal;      // cx, cy, from the top left
uniform vec2 u_viewport;       // drawing-buffer width, height
uniform vec4 u_limits;         // x/z min, max; y/z min, max: the field of view plus 30%

in vec2 a_corner;              // per vertex: the quad's corner, -1 or 1 on each axis
in uint a_index;               // per instance: which splat, back to front
out vec4 v_colour;
out vec3 v_conic;
out vec2 v_offset;             // pixels from the splat's centre

const float C1 = 0.4886025119029199;
const float C20 = 1.0925484305920792, C21 = -1.0925484305920792, C22 = 0.31539156525252005, C23 = -1.0925484305920792,
  C24 = 0.5462742152960396;
const float C30 = -0.5900435899266435, C31 = 2.890611442640554, C32 = -0.4570457994644658, C33 = 0.3731763325901154,
  C34 = -0.4570457994644658, C35 = 1.445305721320277, C36 = -0.5900435899266435;

vec3 coefficient(ivec2 at, int k) {
  return texelFetch(u_sh, at + ivec2(k, 0), 0).rgb;
}

// SH bands 1-3 seen along the unit direction d (camera to splat): spherical_harmonics.py's basis and order
vec3 viewDependent(uint entry, vec3 d) {
  int index = int(entry);
  ivec2 at = ivec2((index % u_shPerRow) * u_shCoeffs, index / u_shPerRow);
  float x = d.x, y = d.y, z = d.z;
  vec3 c = -C1 * y * coefficient(at, 0) + C1 * z * coefficient(at, 1) - C1 * x * coefficient(at, 2);
  if (u_shCoeffs > 3) {
    float xx = x * x, yy = y * y, zz = z * z;
    c += C20 * x * y * coefficient(at, 3) + C21 * y * z * coefficient(at, 4)
      + C22 * (2.0 * zz - xx - yy) * coefficient(at, 5) + C23 * x * z * coefficient(at, 6)
      + C24 * (xx - yy) * coefficient(at, 7);
    if (u_shCoeffs > 8) {
      c += C30 * y * (3.0 * xx - yy) * coefficient(at, 8) + C31 * x * y * z * coefficient(at, 9)
        + C32 * y * (4.0 * zz - xx - yy) * coefficient(at, 10) + C33 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * coefficient(at, 11)
        + C34 * x * (4.0 * zz - xx - yy) * coefficient(at, 12) + C35 * z * (xx - yy) * coefficient(at, 13)
        + C36 * x * (xx - 3.0 * yy) * coefficient(at, 14);
    }
  }
  return c;
}

void main() {
  gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // culled: outside the clip volume
  int splat = int(a_index);
  ivec2 at = ivec2((splat % u_splatsPerRow) * 3, splat / u_splatsPerRow);
  uvec4 t0 = texelFetch(u_splats, at, 0);
  uvec4 t2 = texelFetch(u_splats, at + ivec2(2, 0), 0);
  v_colour = vec4(unpackHalf2x16(t2.z), unpackHalf2x16(t2.w));
  if (!(v_colour.a >= 1.0 / 255.0)) return;

  vec3 world = uintBitsToFloat(t0.xyz);
  vec3 mean = u_rotation * world + u_translation;
  if (!(mean.z > 0.01 && mean.z < 1e10)) return;
  uint shEntry = t0.w & 0xffffu;
  if (u_shCoeffs > 0 && shEntry != 0xffffu) v_colour.rgb += viewDependent(shEntry, normalize(world - u_eye));
  v_colour.rgb = max(v_colour.rgb, 0.0);
  vec4 t1 = uintBitsToFloat(texelFetch(u_splats, at + ivec2(1, 0), 0));
  vec2 cov2 = uintBitsToFloat(t2.xy);
  mat3 sigma = mat3(t1.x, t1.y, t1.z, t1.y, t1.w, cov2.x, t1.z, cov2.x, cov2.y);

  float rz = 1.0 / mean.z;
  vec2 ratio = vec2(clamp(mean.x * rz, u_limits.x, u_limits.y), clamp(mean.y * rz, u_limits.z, u_limits.w));
  // Jacobian of the projection (rows: du, dv; third row zero), column-major
  mat3 jacobian = mat3(u_focal.x * rz, 0.0, 0.0, 0.0, u_focal.y * rz, 0.0,
                       -u_focal.x * ratio.x * rz, -u_focal.y * ratio.y * rz, 0.0);
  mat3 m = jacobian * u_rotation;
  mat3 cov = m * sigma * transpose(m);
  // The trainer blurred each splat by u_blur.x of its pixels^2. Drawn sharper, thin splats that no photo resolved
  // turn into needles on a screen with more pixels than the photos. So the blur is never less than the trainer's
  // at the photos' pixel density (u_blur.y: as wide an angle), and never less than the trainer's as the photo
  // that saw the splat largest saw it ("rate" pixels per unit of length there; Mip-Splatting's 3D filter, kept to
  // what training used), which grows as the camera comes closer than any photo.
  float rate = unpackHalf2x16(t0.w >> 16).x;
  float seen = rate > 0.0 ? max(u_focal.x, u_focal.y) * rz / rate : 0.0;
  float blur = max(u_blur.y, u_blur.x * seen * seen);
  float a = cov[0][0] + blur, b = 0.5 * (cov[0][1] + cov[1][0]), c = cov[1][1] + blur;
  float det = a * c - b * b;
  if (!(det > 0.0)) return;
  v_conic = vec3(c, -b, a) / det;

  // the quad spans the ellipse where opacity * exp(-d^T conic d / 2) >= 1/255, along the covariance's axes
  float mid = 0.5 * (a + c);
  float spread = sqrt(max(mid * mid - det, 0.0));
  float big = mid + spread, small = max(mid - spread, 1e-6);
  vec2 axis = abs(b) > 1e-9 * big ? normalize(vec2(b, big - a)) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
  float extent = sqrt(2.0 * log(255.0 * v_colour.a));
  v_offset = a_corner.x * (extent * sqrt(big) + 1.0) * axis + a_corner.y * (extent * sqrt(small) + 1.0) * vec2(-axis.y, axis.x);

  vec2 centre = u_focal * mean.xy * rz + u_principal;
  vec2 pixel = centre + v_offset;
  gl_Position = vec4(pixel.x / u_viewport.x * 2.0 - 1.0, 1.0 - pixel.y / u_viewport.y * 2.0, 0.0, 1.0);
}
`;

export const FRAGMENT_SHADER = `#version 300 es
precision highp float;

in vec4 v_colour;
in vec3 v_conic;
in vec2 v_offset;
out vec4 fragColour;

void main() {
  vec2 d = v_offset;
  float power = -0.5 * (v_conic.x * d.x * d.x + v_conic.z * d.y * d.y) - v_conic.y * d.x * d.y;
  if (power > 0.0) discard;
  float alpha = min(0.99, v_colour.a * exp(power));
  if (alpha < 1.0 / 255.0) discard;
  fragColour = vec4(v_colour.rgb * alpha, alpha);  // premultiplied, blended back to front
}
`;
