import type { ZodError } from 'zod';
import type { Issue } from './validation-issues';
import { zodIssues } from './validation-issues';

/**
 * The issues of a failed query validation, each about a parameter the request repeated said as
 * that: Hono hands a repeated parameter to the schema as an array, and zod's own words for it
 * ("expected number, received NaN", "expected string, received array") named neither the
 * repeat nor the way out. Issues about parameters sent once are kept as zod said them.
 */
export function queryIssues(error: ZodError, queries: Record<string, string[]>): Issue[] {
  const said = new Set<string>();
  const issues: Issue[] = [];
  for (const issue of zodIssues(error)) {
    const name = issue.path[0];
    if (name === undefined || (queries[name]?.length ?? 0) < 2) {
      issues.push(issue);
      continue;
    }
    if (said.has(name)) continue;
    said.add(name);
    issues.push({ path: [name], message: `given more than once (${queries[name]?.length ?? 2} times): send ${name} once`, code: 'repeated_param' });
  }
  return issues;
}
