// Run by tests/test_client_vercel_ai.py with node: the Vercel AI SDK (`ai` with `@ai-sdk/openai` or
// `@ai-sdk/anthropic`) against the gateway, printing what it got as one JSON object. The test copies this file
// next to the installed node_modules (ES modules resolve packages from the script's own directory).
//
// Usage: node vercel_ai_client.mjs VARIANT MODEL GATEWAY_URL KEY
//   VARIANT: "openai.chat" (Chat Completions), "openai" (the provider's default: the Responses API),
//            "anthropic" (Messages), "anthropic.env" (Messages, its base URL from $ANTHROPIC_BASE_URL)
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";

const [variant, modelId, url, key] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: key });
const anthropic = createAnthropic({ baseURL: `${url}/v1`, apiKey: key });
const models = {
  "openai.chat": () => openai.chat(modelId),
  openai: () => openai(modelId),
  anthropic: () => anthropic(modelId),
  "anthropic.env": () => createAnthropic({ apiKey: key })(modelId),
};
const model = models[variant]();
const errors = [];
const onError = ({ error }) => errors.push(String(error?.message ?? error));
const warnings = [];
const warned = (list) => warnings.push(...(list ?? []).map((w) => JSON.stringify(w)));
// the SDK knows the output limits of the model ids it was built with; through a gateway the id may be any name
const common = { model, maxRetries: 0, maxOutputTokens: 256 };

const getWeather = tool({
  description: "The weather in a city.",
  inputSchema: jsonSchema({
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  }),
  execute: async ({ city }) => `sunny in ${city}`,
});

const steps = (all) =>
  all.map((s) => ({
    toolCalls: s.toolCalls.map((c) => ({ name: c.toolName, input: c.input })),
    toolResults: s.toolResults.map((r) => ({ name: r.toolName, output: r.output })),
    text: s.text,
    finishReason: s.finishReason,
  }));

const out = { errors, warnings };
const generated = await generateText({ ...common, prompt: "hello from vercel" });
warned(generated.warnings);
out.generate = { text: generated.text, finishReason: generated.finishReason, usage: generated.usage };

const streamed = streamText({ ...common, prompt: "stream this to me please", onError });
const pieces = [];
for await (const piece of streamed.textStream) pieces.push(piece);
warned(await streamed.warnings);
out.stream = { pieces, text: await streamed.text, usage: await streamed.usage, finishReason: await streamed.finishReason };

const tools = { get_weather: getWeather };
const ask = { ...common, tools, stopWhen: stepCountIs(3), prompt: "What is the weather in Paris?" };
const tooled = await generateText(ask);
tooled.steps.forEach((s) => warned(s.warnings));
out.tools = { text: tooled.text, steps: steps(tooled.steps) };

const streamedTools = streamText({ ...ask, onError });
const streamedSteps = await streamedTools.steps;
streamedSteps.forEach((s) => warned(s.warnings));
out.streamTools = { text: await streamedTools.text, steps: steps(streamedSteps) };

console.log(JSON.stringify(out));
