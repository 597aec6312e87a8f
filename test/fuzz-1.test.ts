import { fuzzRoutes } from './support/fuzz-routes';

// One shard of the route fuzzing: see test/support/fuzz-routes.ts.
fuzzRoutes(0, 3);
