import { z } from 'zod';
import type { A2AOutcome } from '../worker/upstream/conformance';
import { PartV1 } from './a2a-params-shape';

/**
 * What an upstream asks of A2A in its output (`output.a2a`), taken only as far as it fits.
 * An upstream is another party's server, and its output was read as given: an artifact
 * without `parts` (or a list that was not one) threw while the task was built, so the send,
 * GetTask and every ListTasks of the agent answered -32603; a state that is no outcome
 * (`"completed"`) showed COMPLETED with neither artifact nor message, the reply lost, and one
 * naming an object's own key (`"toString"`) made no state at all. What does not fit is left
 * out: the task shows the output as it shows every other answer, the `output` artifact.
 */
const State = z.enum(['input-required', 'auth-required', 'rejected']);

const Artifacts = z.array(z.object({ name: z.string().nullish(), parts: z.array(PartV1).min(1) })).min(1);

export function checkedOutcome(output: unknown): A2AOutcome {
  if (!output || typeof output !== 'object' || !('a2a' in output) || !output.a2a || typeof output.a2a !== 'object') return {};
  const asked = output.a2a as Record<string, unknown>;
  const state = State.safeParse(asked.state);
  if (state.success) return { state: state.data };
  const artifacts = Artifacts.safeParse(asked.artifacts);
  if (!artifacts.success) return {};
  return { artifacts: artifacts.data.map((a) => ({ name: a.name ?? '', parts: a.parts })) };
}
