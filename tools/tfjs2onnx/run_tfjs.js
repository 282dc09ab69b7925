// Runs a TF.js graph model in TensorFlow.js's pure-JavaScript CPU backend
// (the reference for tfjs2onnx's parity tests): loads model.json and its
// weights from memory (no fetch, no native binding), feeds a little-endian
// float32 file of NHWC inputs, and writes each output (the signature's
// order) as <out>.<index>.f32 plus <out>.json with names and shapes.
//
//   node run_tfjs.js MODEL.json INPUT.f32 N OUT
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelPath, inputPath, nStr, out] = process.argv.slice(2);
  if (!out) throw new Error('usage: node run_tfjs.js MODEL.json INPUT.f32 N OUT');
  await tf.setBackend('cpu');
  const json = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of json.weightsManifest) {
    for (const w of group.weights) specs.push(w);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelPath), p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: specs, weightData,
    format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
    signature: json.signature, userDefinedMetadata: json.userDefinedMetadata,
  }));
  const shape = model.inputs[0].shape.slice(1);
  const n = parseInt(nStr, 10);
  const raw = fs.readFileSync(inputPath);
  const per = shape.reduce((a, b) => a * b, 1);
  if (raw.byteLength !== n * per * 4) throw new Error(`input holds ${raw.byteLength} bytes, want ${n * per * 4}`);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor(data, [n, ...shape], 'float32');
  let ys = model.execute(x, model.outputs.map((o) => o.name));
  if (!Array.isArray(ys)) ys = [ys];
  const meta = [];
  for (let i = 0; i < ys.length; i++) {
    const v = await ys[i].data();
    fs.writeFileSync(`${out}.${i}.f32`, Buffer.from(new Float32Array(v).buffer));
    meta.push({ name: model.outputs[i].name, shape: ys[i].shape });
  }
  fs.writeFileSync(`${out}.json`, JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), outputs: meta }));
}

main().catch((e) => { console.error(`run_tfjs: ${e.message}`); process.exit(1); });
