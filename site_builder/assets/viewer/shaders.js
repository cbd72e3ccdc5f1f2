// shaders.js: GLSL for one instanced quad per splat, with the trainer's (gsplat's classic) projection and compositing rules.

export const VERTEX_SHADER = `#version 300 es
precision highp float;
precision highp int;
precision highp usampler2D;

uniform usampler2D u_splats;   // 3 texels per splat, see splat-data.js
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

void main() {
  gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // culled: outside the clip volume
  int splat = int(a_index);
  ivec2 at = ivec2((splat % u_splatsPerRow) * 3, splat / u_splatsPerRow);
  uvec4 t0 = texelFetch(u_splats, at, 0);
  uint rgba = t0.w;
  v_colour = vec4(uvec4(rgba & 255u, (rgba >> 8) & 255u, (rgba >> 16) & 255u, rgba >> 24)) / 255.0;
  if (v_colour.a < 1.0 / 255.0) return;

  vec3 mean = u_rotation * uintBitsToFloat(t0.xyz) + u_translation;
  if (!(mean.z > 0.01 && mean.z < 1e10)) return;
  vec4 t1 = uintBitsToFloat(texelFetch(u_splats, at + ivec2(1, 0), 0));
  vec2 t2 = uintBitsToFloat(texelFetch(u_splats, at + ivec2(2, 0), 0).xy);
  mat3 sigma = mat3(t1.x, t1.y, t1.z, t1.y, t1.w, t2.x, t1.z, t2.x, t2.y);

  float rz = 1.0 / mean.z;
  vec2 ratio = vec2(clamp(mean.x * rz, u_limits.x, u_limits.y), clamp(mean.y * rz, u_limits.z, u_limits.w));
  // Jacobian of the projection (rows: du, dv; third row zero), column-major
  mat3 jacobian = mat3(u_focal.x * rz, 0.0, 0.0, 0.0, u_focal.y * rz, 0.0,
                       -u_focal.x * ratio.x * rz, -u_focal.y * ratio.y * rz, 0.0);
  mat3 m = jacobian * u_rotation;
  mat3 cov = m * sigma * transpose(m);
  float a = cov[0][0] + 0.3, b = 0.5 * (cov[0][1] + cov[1][0]), c = cov[1][1] + 0.3;
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
