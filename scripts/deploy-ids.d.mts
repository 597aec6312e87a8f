/** Types of scripts/deploy-ids.mjs for the test that runs it (test/e2e/deploy-ids.e2e.ts). */
export declare function main(args: string[]): Promise<number>;
